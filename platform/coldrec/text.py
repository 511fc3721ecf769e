"""How items and users become text: the one place both training and serving render it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from coldrec.config import HistoryOrder, TextConfig

DEFAULT_TEXT = TextConfig()

PROFILE_SEPARATOR = " | "


def _clean(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from pandas
        return ""
    return " ".join(str(value).split())


def _cut(value: str, max_chars: int | None) -> str:
    """``value`` in at most ``max_chars`` characters, cut at a word boundary where there is one."""
    if max_chars is None or len(value) <= max_chars:
        return value
    head = value[: max_chars + 1]
    return (head.rsplit(" ", 1)[0] if " " in head else value[:max_chars]).rstrip()


def render_item_text(item: Mapping[str, Any], scene_prefix: bool = False, text: TextConfig | None = None) -> str:
    """Join an item's text fields as its scene's template says (``text``; default: every field,
    title first because it says the most, joined by ". ")."""
    scene = _clean(item.get("scene"))
    template = (text or DEFAULT_TEXT).template(scene)
    parts = []
    for name in template.fields:
        value = _cut(_clean(item.get(name)), template.max_chars.get(name))
        if value:
            value = value.rstrip(".")
            parts.append(f"{name}: {value}" if template.labels else value)
    rendered = ". ".join(parts)
    if scene_prefix and scene:
        rendered = f"{scene}: {rendered}"
    return rendered


def strip_scene_prefix(text: str, scene: str | None) -> str:
    """An item text as :func:`render_item_text` writes it without ``scene_prefix`` (profiles join those)."""
    prefix = f"{_clean(scene)}: "
    return text[len(prefix) :] if prefix != ": " and text.startswith(prefix) else text


def render_profile_text(
    recent_item_texts_newest_first: Iterable[str],
    free_text: str | None = None,
    max_items: int = 10,
    scene: str | None = None,
    order: HistoryOrder = "newest-first",
) -> str:
    """The user tower's input from the ``max_items`` most recent items and the user's own words.

    "newest-first": the scene, the user's words, then the items newest first; the token budget
    (``model.max_user_tokens``) truncates from the end, so the oldest items are the ones that fall off.
    "oldest-first": the items in the order they happened, then the user's words, then the scene;
    the user tower truncates this order from the left (:func:`coldrec.model.encoder.profile_tokenizer`).
    """
    items: list[str] = []
    for i, text in enumerate(recent_item_texts_newest_first):
        if i >= max_items:
            break
        if text:
            items.append(text)
    words = _clean(free_text) if free_text else ""
    if order == "oldest-first":
        parts = [*reversed(items), *([words] if words else [])]
        profile = PROFILE_SEPARATOR.join(parts)
        return f"{profile}{PROFILE_SEPARATOR}{scene}" if scene and profile else scene or profile
    profile = PROFILE_SEPARATOR.join([*([words] if words else []), *items])
    if scene:
        profile = f"{scene}: {profile}"
    return profile
