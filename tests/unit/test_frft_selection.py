"""FRFT subset selection: every rule against indices worked out by hand.

The similarity values are dyadic fractions (exact in binary), so the hand-computed sums and
means tie exactly where the comments say they do.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from irlalign.frft import (
    SELECTORS,
    THRESHOLD_RULES,
    Selection,
    SelectionShortfallWarning,
    both_gt_top_sum,
    cosine_scores,
    either_ge_in_order,
    get_selector,
    half_chosen_half_rejected,
    random,
    rank_descending,
    resolve_count,
    split_train_val,
    top_chosen,
    top_mean,
    top_rejected,
)

# pool index:         0      1      2     3      4      5
S_W = np.array([0.875, 0.5, 1.0, 0.75, 1.0, 0.125])
S_L = np.array([0.75, 0.875, 0.5, 0.625, 0.875, 0.25])
# sum:               1.625  1.375  1.5   1.375  1.875  0.375
# s_w ranking: 2, 4 (tie at 1.0), 0, 3, 1, 5;  s_l ranking: 1, 4 (tie at 0.875), 0, 3, 2, 5


def _no_warning(rule, *args, **kwargs) -> Selection:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return rule(*args, **kwargs)


def test_rule_table_names_every_rule():
    assert set(SELECTORS) == {
        "top_mean",
        "either_ge_in_order",
        "both_gt_top_sum",
        "half_chosen_half_rejected",
        "top_rejected",
        "top_chosen",
        "random",
    }
    assert THRESHOLD_RULES == {"either_ge_in_order", "both_gt_top_sum"}
    assert get_selector("top_mean") is top_mean
    with pytest.raises(ValueError, match="unknown selection rule"):
        get_selector("top_sum")


def test_top_mean_ranks_by_mean_ties_by_index():
    sel = _no_warning(top_mean, S_W, S_L, 4)
    # 4 (0.9375), 0 (0.8125), 2 (0.75), then 1 and 3 tie at 0.6875: the lower index first.
    assert sel.indices.tolist() == [4, 0, 2, 1]
    assert sel.scores.tolist() == [0.9375, 0.8125, 0.75, 0.6875]
    assert sel.shortfall == 0 and sel.requested == 4
    assert top_mean(S_W, S_L, 5).indices.tolist() == [4, 0, 2, 1, 3]
    assert top_mean(S_W, S_L, 0).indices.tolist() == []


def test_top_chosen_and_top_rejected_break_ties_by_ascending_index():
    chosen = _no_warning(top_chosen, S_W, S_L, 3)
    assert chosen.indices.tolist() == [2, 4, 0]
    assert chosen.scores.tolist() == [1.0, 1.0, 0.875]
    rejected = _no_warning(top_rejected, S_W, S_L, 3)
    assert rejected.indices.tolist() == [1, 4, 0]
    assert rejected.scores.tolist() == [0.875, 0.875, 0.75]


def test_rank_descending_is_stable_on_all_ties():
    assert rank_descending(np.zeros(5)).tolist() == [0, 1, 2, 3, 4]
    assert rank_descending(np.array([0.0, -0.0, 1.0])).tolist() == [2, 0, 1]


def test_half_chosen_half_rejected_alternates_and_skips_taken_indices():
    sel = _no_warning(half_chosen_half_rejected, S_W, S_L, 4)
    # chosen 2, rejected 1, chosen 4, rejected 4 is taken so its next one, 0.
    assert sel.indices.tolist() == [2, 1, 4, 0]
    assert sel.scores.tolist() == [1.0, 0.875, 1.0, 0.75]
    # n = 5: the chosen side skips 0 (taken) and takes 3; odd n gives the chosen side one more.
    assert half_chosen_half_rejected(S_W, S_L, 5).indices.tolist() == [2, 1, 4, 0, 3]
    full = half_chosen_half_rejected(S_W, S_L, 6).indices
    assert sorted(full.tolist()) == list(range(6))


def test_half_chosen_half_rejected_with_identical_rankings_still_fills_n_unique():
    s = np.array([0.25, 1.0, 0.5, 0.75])
    sel = half_chosen_half_rejected(s, s, 3)
    assert sel.indices.tolist() == [1, 3, 2]


def test_either_ge_in_order_walks_the_pool_in_order():
    sel = _no_warning(either_ge_in_order, S_W, S_L, 3, tau=0.8)
    assert sel.indices.tolist() == [0, 1, 2]
    assert sel.scores.tolist() == [0.875, 0.875, 1.0]
    assert either_ge_in_order(S_W, S_L, 4, tau=0.8).indices.tolist() == [0, 1, 2, 4]
    # >= is inclusive: at tau = 0.875 records 0 and 1 pass on equality.
    assert either_ge_in_order(S_W, S_L, 4, tau=0.875).indices.tolist() == [0, 1, 2, 4]


def test_both_gt_top_sum_gates_strictly_then_ranks_by_sum():
    sel = _no_warning(both_gt_top_sum, S_W, S_L, 2, tau=0.7)
    assert sel.indices.tolist() == [4, 0]
    assert sel.scores.tolist() == [1.875, 1.625]
    s_w, s_l = np.array([0.5, 0.75, 0.875, 0.75]), np.array([0.875, 1.0, 0.875, 1.0])
    # gate tau = 0.5 (strict) drops 0; 1, 2, 3 all sum to 1.75: ascending index.
    assert both_gt_top_sum(s_w, s_l, 3, tau=0.5).indices.tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("rule", "tau", "n", "expected"),
    [
        (either_ge_in_order, 0.8, 5, [0, 1, 2, 4]),
        (both_gt_top_sum, 0.7, 3, [4, 0]),
        (both_gt_top_sum, 0.875, 1, []),  # strict: 4 has s_l == 0.875, so nothing passes
    ],
)
def test_threshold_shortfall_warns_and_is_reported(rule, tau, n, expected):
    with pytest.warns(SelectionShortfallWarning, match="shortfall"):
        sel = rule(S_W, S_L, n, tau=tau)
    assert sel.indices.tolist() == expected
    assert sel.shortfall == n - len(expected)
    assert sel.requested == n


def test_top_mean_equals_both_gt_top_sum_when_the_gate_does_not_bind():
    rng = np.random.default_rng(0)
    tau = 0.5
    for _ in range(20):
        s_w, s_l = rng.uniform(0.0, 1.0, 200), rng.uniform(0.0, 1.0, 200)
        # every record whose sum exceeds 1 + tau has both terms above tau
        n = int(((s_w + s_l) > 1 + tau).sum())
        assert n > 0
        a, b = top_mean(s_w, s_l, n), _no_warning(both_gt_top_sum, s_w, s_l, n, tau=tau)
        assert a.indices.tolist() == b.indices.tolist()
        np.testing.assert_allclose(2 * a.scores, b.scores)


def test_random_is_seeded_unique_and_of_size_n():
    rng = np.random.default_rng(1)
    s_w, s_l = rng.uniform(size=50), rng.uniform(size=50)
    a, b = random(s_w, s_l, 20, seed=3), random(s_w, s_l, 20, seed=3)
    assert a.indices.tolist() == b.indices.tolist()
    assert random(s_w, s_l, 20, seed=4).indices.tolist() != a.indices.tolist()
    assert len(set(a.indices.tolist())) == 20 and a.indices.max() < 50
    np.testing.assert_array_equal(a.scores, ((s_w + s_l) / 2)[a.indices])


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_every_rule_returns_unique_int_indices(name):
    rng = np.random.default_rng(2)
    # coarse values make many exact ties
    s_w, s_l = rng.integers(0, 4, 40) / 4, rng.integers(0, 4, 40) / 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SelectionShortfallWarning)
        sel = SELECTORS[name](s_w, s_l, 25, tau=0.5, seed=0)
        again = SELECTORS[name](s_w, s_l, 25, tau=0.5, seed=0)
    assert sel.indices.dtype == np.int64
    assert len(set(sel.indices.tolist())) == len(sel.indices) == 25 - sel.shortfall
    assert sel.scores.shape == sel.indices.shape
    assert sel.indices.tolist() == again.indices.tolist()
    if name not in THRESHOLD_RULES:
        assert sel.shortfall == 0


def test_rules_reject_bad_input():
    with pytest.raises(ValueError, match="exceeds"):
        top_mean(S_W, S_L, 7)
    with pytest.raises(ValueError, match="finite"):
        top_mean(np.array([np.nan, 0.5]), np.array([0.5, 0.5]), 1)
    with pytest.raises(ValueError, match="same length"):
        top_chosen(S_W, S_L[:3], 1)
    with pytest.raises(ValueError, match="non-negative int"):
        top_chosen(S_W, S_L, 2.0)


def test_resolve_count_takes_a_count_or_a_fraction():
    assert resolve_count(2000, 76256) == 2000
    assert resolve_count(np.int64(7), 10) == 7
    assert resolve_count(0.1, 2000) == 200
    assert resolve_count(0.29, 100) == 29  # 0.29 * 100 == 28.999...: rounded, not floored
    assert resolve_count(1.0, 37) == 37
    assert resolve_count(0.0, 37) == 0
    with pytest.raises(ValueError):
        resolve_count(1.5, 10)
    with pytest.raises(ValueError):
        resolve_count(-1, 10)
    with pytest.raises(TypeError):
        resolve_count(True, 10)


def test_split_is_seeded_disjoint_and_keeps_selection_order():
    indices = np.array([40, 7, 13, 99, 2, 58, 61, 5, 17, 33])
    train, val = split_train_val(indices, 3, seed=0)
    again_train, again_val = split_train_val(indices, 3, seed=0)
    assert train.tolist() == again_train.tolist() and val.tolist() == again_val.tolist()
    assert len(val) == 3 and len(train) == 7
    assert not set(train.tolist()) & set(val.tolist())
    assert set(train.tolist()) | set(val.tolist()) == set(indices.tolist())
    position = {v: k for k, v in enumerate(indices.tolist())}
    for part in (train, val):
        assert [position[v] for v in part.tolist()] == sorted(position[v] for v in part.tolist())
    others = {tuple(split_train_val(indices, 3, seed=s)[1].tolist()) for s in range(10)}
    assert len(others) > 1


def test_split_drops_duplicates_before_splitting():
    with pytest.warns(UserWarning, match="duplicate"):
        train, val = split_train_val([3, 1, 3, 2, 1, 4], 2, seed=1)
    assert len(val) == 2 and len(train) == 2
    assert sorted(train.tolist() + val.tolist()) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="exceeds"):
        split_train_val([1, 2], 3, seed=0)


def test_cosine_scores_by_hand():
    sample = np.array([[1.0, 0.0], [3.0, 4.0]])
    chosen = np.array([[1.0, 0.0], [0.0, 1.0]])
    rejected = np.array([[0.0, 2.0], [4.0, 3.0]])
    s_w, s_l = cosine_scores(sample, chosen, rejected)
    np.testing.assert_allclose(s_w, [1.0, 4 / 5])
    np.testing.assert_allclose(s_l, [0.0, 24 / 25])
    t_w, t_l = cosine_scores(
        *(torch.tensor(x, dtype=torch.float32) for x in (sample, chosen, rejected))
    )
    np.testing.assert_allclose(t_w, s_w, rtol=1e-6)
    np.testing.assert_allclose(t_l, s_l, rtol=1e-6)


def test_cosine_scores_average_over_samples_per_prompt():
    sample = np.array([[[1.0, 0.0], [0.0, 1.0]]])  # (N=1, S=2, d=2)
    s_w, s_l = cosine_scores(sample, np.array([[2.0, 0.0]]), np.array([[1.0, 1.0]]))
    np.testing.assert_allclose(s_w, [0.5])  # mean of cos 1 and cos 0
    np.testing.assert_allclose(s_l, [1 / np.sqrt(2)])


def test_cosine_scores_of_a_zero_vector_is_zero_not_nan():
    s_w, s_l = cosine_scores(np.zeros((1, 3)), np.ones((1, 3)), np.ones((1, 3)))
    assert s_w.tolist() == [0.0] and s_l.tolist() == [0.0]
    with pytest.raises(ValueError):
        cosine_scores(np.ones((2, 3)), np.ones((2, 4)), np.ones((2, 4)))
