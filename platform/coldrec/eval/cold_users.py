"""Cold-user buckets: how accuracy grows with the number of interactions a user brings.

Each sampled user's target is their last interaction (the leave-one-out test target, so
a model trained on the leave-one-out train split never saw it); their *history* is every
interaction before it (newest ``max_history`` kept). With ``truncate=True`` (default) a
user is evaluated in every bucket their history can fill, keeping only their newest
items: bucket "1" / "2" / "3" keeps exactly 1 / 2 / 3, "4-10" keeps min(len, 10) when
len >= 4, ">10" keeps the whole history when len > 10. So buckets 1-3 hold the same
users and differ only in how much history is shown. With ``truncate=False`` each user
falls in the one bucket of their full history length.

Bucket "0" has no interactions at all, only a free-text description written from data
by :func:`free_text_description`: from the user's history items (the ones before the
target), never from the target: any occurrence of the target item in the history is
dropped first, and the target's text is never read. The validation examples, described the
same way (:func:`free_text_examples`), are what the ``fused`` method learns its weights for
free text alone on.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import pandas as pd

from coldrec.config import PipelineConfig, TextConfig
from coldrec.data.processed import load_examples
from coldrec.eval.examples import plain_item_texts, profile, sample_users, sequences
from coldrec.eval.runner import EvalData

BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0", 0, 0), ("1", 1, 1), ("2", 2, 2), ("3", 3, 3), ("4-10", 4, 10), (">10", 11, None))
DESCRIPTION_WORDS = 12
DESCRIPTION_ITEMS = 10
_WORD = re.compile(r"[a-z]+")
STOPWORDS = frozenset(
    "a an and are as at be by for from has have in into is it its of on or our the this to with without your you "
    "not all any each per pack pcs set new inch inches size"
    .split())  # fmt: skip


def bucket_of(n_interactions: int) -> str:
    for label, lo, hi in BUCKETS:
        if n_interactions >= lo and (hi is None or n_interactions <= hi):
            return label
    raise ValueError(f"negative interaction count {n_interactions}")


def free_text_description(history: Sequence[str], target: str, items: pd.DataFrame | dict[str, dict],
                          max_items: int = DESCRIPTION_ITEMS, max_words: int = DESCRIPTION_WORDS) -> str:
    """"Looking for: w1, w2, ..." from the words of the user's history items.

    Exactly: drop every history occurrence of ``target``; take the newest ``max_items``
    remaining items; from each take its ``categories`` and ``genres`` fields, or its ``title``
    when it has neither (the Amazon readers keep title, categories and brand together in ``title``);
    lower-case words of 3+ letters that are not stopwords; count in how many of these
    items each word occurs; keep the ``max_words`` most frequent (ties: the word seen
    first, newest item first). Empty when nothing is left. The target's text is never read.
    """
    fields = items if isinstance(items, dict) else _description_fields(items)
    others = [h for h in reversed(list(history)) if h != target][:max_items]
    counts: Counter = Counter()
    first_seen: dict[str, int] = {}
    for item_id in others:
        row = fields.get(item_id, {})
        labels = " ".join(v for v in (row.get("categories"), row.get("genres")) if isinstance(v, str) and v)
        source = labels or (row.get("title") if isinstance(row.get("title"), str) else "")
        words = [w for w in _WORD.findall(source.lower()) if len(w) >= 3 and w not in STOPWORDS]
        for w in dict.fromkeys(words):
            counts[w] += 1
            first_seen.setdefault(w, len(first_seen))
    best = sorted(counts, key=lambda w: (-counts[w], first_seen[w]))[:max_words]
    return f"Looking for: {', '.join(best)}" if best else ""


def free_text_examples(examples: pd.DataFrame, items: pd.DataFrame, profile_items: int,
                       scene: str | None = None, text: TextConfig | None = None) -> pd.DataFrame:
    """Bucket "0" made of other examples (validation's: what the fused method learns its weights for
    free text alone on, :mod:`coldrec.rank.free_text`). Per example, its history's
    :func:`free_text_description` (the target's text is never read) becomes ``free_text`` and the
    profile, and the history is emptied; examples whose description is empty are dropped. ``text``:
    the processed folder's templates and history order."""
    fields = _description_fields(items)
    order = (text or TextConfig()).history_order
    free = [free_text_description(h, t, fields) for h, t in zip(examples["history"], examples["target"])]
    out = examples.assign(free_text=free)
    out = out[out["free_text"] != ""].reset_index(drop=True)
    out["profile_text"] = [profile([], {}, profile_items, scene, f, order) for f in out["free_text"]]
    out["history"] = [[] for _ in range(len(out))]
    return out


def _description_fields(items: pd.DataFrame) -> dict[str, dict]:
    cols = [c for c in ("title", "categories", "genres") if c in items]
    return items.set_index("item_id")[cols].to_dict("index")


def bucket_queries(seqs: pd.Series, max_history: int, truncate: bool = True) -> pd.DataFrame:
    """user_id, bucket, history, targets (one: the last item), full_history for every bucket a user fills."""
    rows = []
    for user, seq in seqs.items():
        if len(seq) < 2:
            continue
        target, full = seq[-1], seq[:-1][-max_history:]
        rows.append((user, "0", [], [target], full))
        n = len(full)
        if not truncate:
            rows.append((user, bucket_of(n), full, [target], full))
            continue
        for label, lo, hi in BUCKETS[1:]:
            if n >= lo:
                keep = n if hi is None else min(n, hi)
                rows.append((user, label, full[n - keep :], [target], full))
    return pd.DataFrame(rows, columns=["user_id", "bucket", "history", "targets", "full_history"])


def cold_user_data(cfg: PipelineConfig, items: pd.DataFrame, inter: pd.DataFrame, scene_prefix: bool = False,
                   truncate: bool = True, protocol: str = "cold-users", text: TextConfig | None = None) -> EvalData:
    """EvalData over a fixed sample of ``eval.max_users`` users; trains on the leave-one-out train split.
    ``text``: the templates and history order the processed folder was rendered with."""
    text = text or TextConfig()
    pdir = cfg.data.processed_dir
    seqs = sequences(inter)
    seqs = seqs[seqs.index.isin(sample_users(seqs.index, cfg.eval.max_users, cfg.eval.seed))]
    queries = bucket_queries(seqs, cfg.data.max_history, truncate)
    texts = plain_item_texts(items, text)
    fields = _description_fields(items)
    scene = cfg.data.scene_name if scene_prefix else None
    free = [free_text_description(full, t[0], fields) if b == "0" else None
            for b, full, t in zip(queries["bucket"], queries["full_history"], queries["targets"])]
    queries["free_text"] = free
    queries["profile_text"] = [profile(h, texts, cfg.data.profile_items, scene, f, text.history_order)
                               for h, f in zip(queries["history"], free)]
    queries = queries.drop(columns=["full_history"])
    facts = {"truncate": truncate, "users": int(queries["user_id"].nunique()),
             "queries_per_bucket": queries["bucket"].value_counts().to_dict()}
    valid = load_examples(pdir, "valid")
    return EvalData(dataset=cfg.data.scene_name, protocol=protocol, items=items,
                    train=load_examples(pdir, "train"), test=queries, valid=valid, facts=facts,
                    free_text_valid=free_text_examples(valid, items, cfg.data.profile_items, scene, text))
