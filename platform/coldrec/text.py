"""How items and users become text: the one place both training and serving render it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from coldrec.data.schema import ITEM_TEXT_FIELDS

PROFILE_SEPARATOR = " | "


def _clean(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from pandas
        return ""
    return " ".join(str(value).split())


def render_item_text(item: Mapping[str, Any], scene_prefix: bool = False) -> str:
    """Join an item's text fields in a fixed order: title first, because it says the most."""
    parts = [_clean(item.get(name)) for name in ITEM_TEXT_FIELDS]
    text = ". ".join(p.rstrip(".") for p in parts if p)
    if scene_prefix and _clean(item.get("scene")):
        text = f"{_clean(item['scene'])}: {text}"
    return text


def render_profile_text(
    recent_item_texts_newest_first: Iterable[str],
    free_text: str | None = None,
    max_items: int = 10,
    scene: str | None = None,
) -> str:
    """The user tower's input: the user's own words first, then recent items, newest first.

    The tokenizer's token budget (``model.max_user_tokens``) truncates from the end, so the
    oldest items are the ones that fall off.
    """
    parts: list[str] = []
    if free_text and _clean(free_text):
        parts.append(_clean(free_text))
    for i, text in enumerate(recent_item_texts_newest_first):
        if i >= max_items:
            break
        if text:
            parts.append(text)
    profile = PROFILE_SEPARATOR.join(parts)
    if scene:
        profile = f"{scene}: {profile}"
    return profile
