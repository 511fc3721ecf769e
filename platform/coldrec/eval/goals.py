"""The accuracy issue's cold-start goals, checked on recorded quality rows (never typed by hand).

- Cold items (goal 3): on a time split, a method's Recall@10 on targets never seen in training is at
  least ``ratio`` x its Recall@10 on warm targets, and every ID-based baseline scores zero on them.
- Cold users (goal 4): in every cold-user bucket, a method beats popularity by ``factor`` x and beats
  item-kNN.

Both read the rows :func:`coldrec.eval.table.run_quality_table` writes (``benchmarks/results/quality.json``).
"""

from __future__ import annotations

ID_BASELINES = ("popularity", "itemknn", "ease")


def _values(rows: list[dict], metric: str, k: int, masked: bool) -> dict[tuple, float]:
    return {(r["dataset"], r["protocol"], r.get("bucket"), r["method"]): r["value"] for r in rows
            if r["metric"] == metric and r.get("k") == k and r["masked_history"] == masked}


def cold_item_checks(rows: list[dict], method: str = "fused", ratio: float = 0.8, k: int = 10,
                     masked: bool = False) -> list[dict]:
    """One check per dataset with a time split: ``method``'s cold and warm Recall@k, their ratio,
    the ID baselines' cold Recall@k, and whether the goal is met."""
    values = _values(rows, "recall", k, masked)
    out = []
    for dataset in sorted({d for d, p, _, _ in values if p == "time-split"}):
        cold, warm = values.get((dataset, "time-split", "cold", method)), values.get((dataset, "time-split", "warm", method))
        if cold is None or warm is None:
            continue
        ids = {m: values[(dataset, "time-split", "cold", m)] for m in ID_BASELINES
               if (dataset, "time-split", "cold", m) in values}
        share = cold / warm if warm else None
        met = (share is None or share >= ratio) and cold > 0 and all(v == 0 for v in ids.values())
        out.append({"goal": "cold-items", "dataset": dataset, "method": method, "metric": f"recall@{k}",
                    "cold": cold, "warm": warm, "ratio": None if share is None else round(share, 4),
                    "id_baselines_on_cold": ids, "goal_met": met})
    return out


def cold_user_checks(rows: list[dict], method: str = "fused", factor: float = 2.0, metric: str = "ndcg",
                     k: int = 10, masked: bool = False) -> list[dict]:
    """One check per (dataset, bucket) of the cold-user protocol: ``method`` against popularity and item-kNN."""
    values = _values(rows, metric, k, masked)
    out = []
    for dataset, protocol, bucket, name in sorted(values, key=lambda key: tuple(str(p) for p in key)):
        if protocol != "cold-users" or name != method:
            continue
        ours = values[(dataset, protocol, bucket, name)]
        pop = values.get((dataset, protocol, bucket, "popularity"))
        knn = values.get((dataset, protocol, bucket, "itemknn"))
        if pop is None or knn is None:
            continue
        out.append({"goal": "cold-users", "dataset": dataset, "bucket": bucket, "method": method,
                    "metric": f"{metric}@{k}", "value": ours, "popularity": pop, "itemknn": knn,
                    "goal_met": ours >= factor * pop and ours > knn})
    return out
