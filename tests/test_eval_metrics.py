import math

import numpy as np
import pytest

from coldrec.eval.catalog import catalog_metrics, coverage, intra_list_diversity, novelty, popular_items, popularity_bias
from coldrec.eval.metrics import rank_metrics, target_ranks
from coldrec.eval.ranking import filter_targets, mean_metrics, multi_target_ranks, per_query_metrics, top_k


def test_single_target_matches_rank_metrics():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(30, 40)).astype(np.float32)  # many ties
    targets = rng.integers(0, 40, size=30)
    tie_order = rng.permutation(40)
    ranks = multi_target_ranks(scores, [np.array([t]) for t in targets], tie_order)
    assert np.array_equal(np.concatenate(ranks), target_ranks(scores, targets, tie_order))
    ours = mean_metrics(per_query_metrics(ranks, [5, 10]))
    theirs = rank_metrics(np.concatenate(ranks), [5, 10])
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value)
    assert ours["hit@5"] == pytest.approx(ours["recall@5"])


def test_several_targets_by_hand():
    # ranks 0 and 3 of 2 targets; ranks 7 of 1 target; no target (left out)
    ranks = [np.array([0, 3]), np.array([7]), np.array([], dtype=np.int64)]
    m = per_query_metrics(ranks, [2, 5])
    assert m["recall@2"][0] == 0.5 and m["recall@5"][0] == 1.0 and m["hit@2"][0] == 1.0
    assert m["ndcg@5"][0] == pytest.approx((1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    assert m["ndcg@2"][0] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert m["recall@5"][1] == 0.0 and m["mrr"][1] == pytest.approx(1 / 8)
    assert np.isnan(m["recall@5"][2])
    means = mean_metrics(m)
    assert means["hit@5"] == pytest.approx(0.5)  # the empty query is not a miss
    assert mean_metrics(m, np.array([False, True, False]))["mrr"] == pytest.approx(1 / 8)


def test_other_targets_count_ahead_and_filtering_keeps_full_ranks():
    scores = np.array([[0.9, 0.8, 0.1, 0.5]])
    ranks = multi_target_ranks(scores, [np.array([0, 1, 3])], np.arange(4))
    assert ranks[0].tolist() == [0, 1, 2]
    keep = np.array([False, False, False, True])
    assert filter_targets([np.array([0, 1, 3])], ranks, keep)[0].tolist() == [2]


def test_top_k_breaks_ties_like_target_ranks():
    scores = np.array([[1.0, 2.0, 2.0, 0.0, 2.0]])
    tie_order = np.array([0, 4, 1, 2, 3])  # item 2 before item 4 before item 1
    assert top_k(scores, 3, tie_order)[0].tolist() == [2, 4, 1]
    for pos, item in enumerate(top_k(scores, 5, tie_order)[0]):
        assert target_ranks(scores, np.array([item]), tie_order)[0] == pos


def test_catalogue_metrics_by_hand():
    counts = np.array([10, 5, 0, 0, 1])
    topk = np.array([[0, 1], [0, 2]])
    assert coverage(topk, 5) == pytest.approx(3 / 5)
    p = (counts + 1) / (16 + 5)
    assert novelty(topk, counts) == pytest.approx(np.mean(-np.log2(p[[0, 1, 0, 2]])))
    assert popular_items(counts).tolist() == [True, False, False, False, False]  # ceil(0.2 * 5) = 1
    assert popularity_bias(topk, counts) == pytest.approx(2 / 4)
    vecs = np.array([[1, 0], [0, 1], [1, 0], [1, 1], [0, 2]], dtype=np.float32)
    # list 1: orthogonal -> distance 1; list 2: identical directions -> 0
    assert intra_list_diversity(topk, vecs) == pytest.approx(0.5)
    three = np.array([[0, 1, 3]])
    expected = np.mean([1.0, 1 - 1 / math.sqrt(2), 1 - 1 / math.sqrt(2)])
    assert intra_list_diversity(three, vecs) == pytest.approx(expected)
    m = catalog_metrics(np.array([[0, 1, 3]]), counts, [1, 3], vecs)
    assert m["coverage@1"] == pytest.approx(1 / 5) and m["diversity@1"] == 0.0
    assert "diversity@3" in m and "diversity@3" not in catalog_metrics(three, counts, [3])
