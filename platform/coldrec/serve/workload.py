"""Realistic /recommend requests from a processed dataset, and the profile texts the ingress renders
for them (what the ProfileEncoder then encodes), for the serving benchmark.

Two kinds, one per test user of the leave-one-out split (sampled, seeded):

    item   {"item_ids": the user's newest ``max_ids`` history items, newest first, "k": 10}
    text   {"text": "Looking for: w1, w2, ...", "k": 10}: the cold-user description the
           evaluation builds from the same history (coldrec.eval.cold_users), never the target
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coldrec.config import HistoryOrder
from coldrec.data.processed import load_examples, load_items
from coldrec.eval.cold_users import free_text_description
from coldrec.eval.examples import sample_users
from coldrec.text import render_profile_text

KINDS = ("text", "item")


def request_bodies(processed_dir: str | Path, n: int = 500, max_ids: int = 10, k: int = 10,
                   seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """{kind: [/recommend body]} for up to ``n`` test users who have a history."""
    examples = load_examples(processed_dir, "test")
    examples = examples[examples["history"].map(len) > 0]
    chosen = set(sample_users(list(examples["user_id"].unique()), n, seed))
    examples = examples[examples["user_id"].isin(chosen)]
    items = load_items(processed_dir)
    bodies: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for history, target in zip(examples["history"], examples["target"]):
        history = [str(h) for h in history]
        newest_first = list(dict.fromkeys(reversed(history)))[:max_ids]
        bodies["item"].append({"item_ids": newest_first, "k": k})
        text = free_text_description(history, str(target), items)
        if text:
            bodies["text"].append({"text": text, "k": k})
    missing = [kind for kind, found in bodies.items() if not found]
    if missing:
        raise ValueError(f"{processed_dir}: no test user gives a {' or '.join(missing)} request")
    return bodies


def profile_texts(bodies: list[dict[str, Any]], item_texts: dict[str, str], profile_items: int,
                  scene: str | None = None, order: HistoryOrder = "newest-first") -> list[str]:
    """The user-tower input of each body, rendered as ``Ingress.recommend`` renders it.

    ``item_texts``: item_id -> the index row's ``text`` without its scene prefix (what the Ingress
    joins); ``scene``: the scene prefix when the model uses one (None otherwise); ``order``: the
    model's history order (``model.text.history_order``).
    """
    return [
        render_profile_text([item_texts[i] for i in body.get("item_ids") or [] if i in item_texts],
                            free_text=body.get("text"), max_items=profile_items, scene=scene, order=order)
        for body in bodies
    ]  # fmt: skip
