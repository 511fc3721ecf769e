"""A user's history in words: top categories / brands / genres, recent items, key words.

Pure functions over plain dicts, so the ingress stays thin and this is tested without Serve.
``items`` maps item_id -> the retriever's lookup fields (title, text, categories, brand, genres).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

# Words that say nothing about taste; small on purpose (catalog text is short and specific).
STOPWORDS = frozenset(
    """a about all also an and any are as at be been but by can for from has have how i in into is it its
    just more most my new no not of on one or our out over so such than that the their them then there these
    they this to too up us use used very was we were what when which while who will with without you your
    pack set size inch inches x pcs piece pieces""".split()
)
_WORD = re.compile(r"[a-z][a-z0-9'-]{2,}")
_LABEL_SPLIT = re.compile(r"\s*[|,;>]\s*")


def informative_words(text: str | None) -> list[str]:
    """Lower-cased words of 3+ characters that start with a letter, stopwords dropped, in order."""
    return [w.strip("'-") for w in _WORD.findall((text or "").lower()) if w.strip("'-") not in STOPWORDS]


def split_labels(value: str | None) -> list[str]:
    """``"Action|Comedy"``, ``"Lab, Safety"``, ``"Tools > Drills"`` -> their labels."""
    return [label for label in _LABEL_SPLIT.split((value or "").strip()) if label]


def top_counts(values: Iterable[str], n: int = 5) -> list[dict[str, Any]]:
    # Ties by name, so the same history always reads the same.
    counts = Counter(values)
    return [{"name": k, "count": c} for k, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def summarize(
    user_id: str,
    events: list[Mapping[str, Any]],
    items: Mapping[str, Mapping[str, str]],
    profile_text: str = "",
    recent: int = 10,
    top: int = 5,
) -> dict[str, Any]:
    """The readable profile. ``events``: newest first, each {item_id, kind, ts, rating}; events on
    items no longer in the catalog count in ``events`` but are not described."""
    known = [e for e in events if e["item_id"] in items]
    rows = [items[e["item_id"]] for e in known]
    words = Counter(w for row in rows for w in set(informative_words(row.get("text") or row.get("title"))))
    return {
        "user_id": user_id,
        "events": len(events),
        "recent_items": [
            {"item_id": e["item_id"], "title": items[e["item_id"]].get("title", ""), "kind": e["kind"],
             "ts": e["ts"], "rating": e.get("rating")}
            for e in known[:recent]
        ],  # fmt: skip
        "top_categories": top_counts((c for row in rows for c in split_labels(row.get("categories"))), top),
        "top_brands": top_counts((row["brand"].strip() for row in rows if (row.get("brand") or "").strip()), top),
        "top_genres": top_counts((g for row in rows for g in split_labels(row.get("genres"))), top),
        # Words in the most history items first (document frequency, not raw counts): one long
        # description must not drown the rest.
        "key_words": [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[: top * 2]],
        "profile_text": profile_text,
    }
