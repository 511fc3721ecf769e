"""LoRA for the profile model's backbone (peft): train low-rank adapters, save merged weights.

Large backbones are fine-tuned through adapters (``model.lora`` in the config): the backbone's
weights stay frozen and only the adapters train. A checkpoint holds the backbone with the
adapters merged in (:func:`merged_backbone`), a plain Hugging Face model like any other, so
indexing, evaluation and serving never need peft. The adapter weights alone
(:func:`adapter_state`) go into the training state, so a resumed run continues the same adapters
on the original backbone.
"""

from __future__ import annotations

import copy

from torch import nn

from coldrec.config import LoraConfig


def apply_lora(backbone: nn.Module, cfg: LoraConfig) -> nn.Module:
    """The backbone wrapped with fresh adapters (peft ``get_peft_model``); only they require grad."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    peft_cfg = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=cfg.target_modules, bias="none")  # fmt: skip
    return get_peft_model(backbone, peft_cfg)


def is_lora(backbone: nn.Module) -> bool:
    """True for a backbone wrapped by :func:`apply_lora` (checked without importing peft)."""
    return getattr(backbone, "peft_config", None) is not None and hasattr(backbone, "merge_and_unload")


def merged_backbone(backbone: nn.Module) -> nn.Module:
    """A copy of the backbone with the adapters merged in (the training model keeps its adapters);
    a backbone without adapters is returned as it is."""
    if not is_lora(backbone):
        return backbone
    return copy.deepcopy(backbone).merge_and_unload()


def adapter_state(backbone: nn.Module) -> dict:
    """The adapter weights alone (for resuming)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu() for k, v in get_peft_model_state_dict(backbone).items()}


def load_adapter_state(backbone: nn.Module, state: dict) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(backbone, state)
