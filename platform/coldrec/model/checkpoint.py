"""Checkpoints are plain Hugging Face directories plus ``coldrec.json``.

Anyone can load one with ``AutoModel.from_pretrained(path)``; the JSON holds the few
coldrec settings needed to use it as a profile model (token budgets, scene prefix, how
profiles are rendered), so serving and evaluation never need the training code.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from coldrec.config import DataConfig, ModelConfig, TextConfig

SETTINGS_FILE = "coldrec.json"


class EncoderSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    backbone: str
    max_user_tokens: int = 128
    max_item_tokens: int = 64
    scene_prefix: bool = False
    profile_items: int = 10
    temperature: float = 0.05
    text: TextConfig = TextConfig()  # item templates and history order; absent in older checkpoints: the defaults
    version: str = "untrained"
    metrics: dict[str, Any] = {}

    @classmethod
    def from_configs(cls, model: ModelConfig, data: DataConfig | None = None, **extra: Any) -> "EncoderSettings":
        return cls(
            backbone=model.backbone,
            max_user_tokens=model.max_user_tokens,
            max_item_tokens=model.max_item_tokens,
            scene_prefix=model.scene_prefix,
            profile_items=(data or DataConfig()).profile_items,
            temperature=model.temperature,
            text=model.text,
            **extra,
        )


def is_checkpoint(path: str | Path) -> bool:
    return (Path(path) / SETTINGS_FILE).is_file()


def save_checkpoint(backbone, tokenizer, settings: EncoderSettings, path: str | Path) -> Path:
    """Write the backbone, its tokenizer and the settings; the version is a content stamp."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    backbone.save_pretrained(path)
    tokenizer.save_pretrained(path)
    stamp = f"{settings.backbone}:{time.time_ns()}".encode()
    settings = settings.model_copy(update={"version": hashlib.sha1(stamp).hexdigest()[:12]})
    (path / SETTINGS_FILE).write_text(settings.model_dump_json(indent=2))
    return path


def load_settings(path: str | Path) -> EncoderSettings:
    return EncoderSettings.model_validate(json.loads((Path(path) / SETTINGS_FILE).read_text()))
