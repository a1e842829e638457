"""irlalign.generation.best_of_n: the exact best-of-n subset estimator, first-n and log₂N."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from irlalign.generation.best_of_n import (
    argmax_probabilities,
    best_of_n,
    expected_best_of_n,
    first_n_best,
    log2_n,
)


def _pool(p: int = 3, m: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rm = rng.normal(size=(p, m))
    gold = rm + rng.normal(size=(p, m))  # correlated with the RM, as a useful RM would be
    return rm, gold


def _brute_force(rm: np.ndarray, gold: np.ndarray, n: int) -> np.ndarray:
    """Mean over every size-n subset (in pool order) of the gold score `best_of_n` picks."""
    out = []
    for r, g in zip(rm, gold, strict=True):
        subsets = [list(s) for s in itertools.combinations(range(len(r)), n)]
        picks = best_of_n(r[subsets])
        out.append(np.mean([g[s[k]] for s, k in zip(subsets, picks, strict=True)]))
    return np.array(out)


@pytest.mark.parametrize(("m", "n"), [(1, 1), (5, 1), (5, 3), (5, 5), (40, 7), (3000, 64)])
def test_probabilities_sum_to_one_and_match_binomials(m, n):
    p = argmax_probabilities(m, n)
    assert p.shape == (m,) and (p >= 0).all()
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (p[: n - 1] == 0).all()
    if m <= 40:
        want = [math.comb(i, n - 1) / math.comb(m, n) for i in range(m)]
        np.testing.assert_allclose(p, want, rtol=1e-10, atol=1e-15)


def test_n_one_is_the_pool_mean():
    rm, gold = _pool()
    np.testing.assert_allclose(expected_best_of_n(rm, gold, 1), gold.mean(1), rtol=1e-12)


def test_n_equal_m_is_the_gold_of_the_rm_argmax():
    rm, gold = _pool()
    want = gold[np.arange(len(rm)), rm.argmax(1)]
    np.testing.assert_allclose(expected_best_of_n(rm, gold, rm.shape[1]), want, rtol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_equals_enumeration_of_all_subsets(n):
    rm, gold = _pool(p=2, m=8, seed=1)
    np.testing.assert_allclose(expected_best_of_n(rm, gold, n), _brute_force(rm, gold, n))


def test_ties_follow_best_of_n_first_on_ties():
    rm = np.array([[1.0, 2.0, 2.0, 0.0, 2.0, 1.0], [3.0, 3.0, 3.0, 3.0, 3.0, 3.0]])
    gold = np.array([[0.0, 10.0, 20.0, 30.0, 40.0, 50.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    for n in range(1, 7):
        got = expected_best_of_n(rm, gold, n)
        np.testing.assert_allclose(got, _brute_force(rm, gold, n), err_msg=f"n={n}")
    # All tied, n = M: the first sample of the pool wins, as best_of_n says.
    assert expected_best_of_n(rm, gold, 6)[1] == pytest.approx(1.0)


def test_agrees_with_monte_carlo_within_its_standard_error():
    rm, gold = _pool(p=3, m=30, seed=2)
    n, draws = 6, 20_000
    rng = np.random.default_rng(3)
    exact = expected_best_of_n(rm, gold, n)
    for p in range(len(rm)):
        subsets = np.argsort(rng.random((draws, rm.shape[1])), axis=1)[:, :n]
        picks = subsets[np.arange(draws), rm[p][subsets].argmax(1)]
        values = gold[p][picks]
        se = values.std(ddof=1) / math.sqrt(draws)
        assert abs(values.mean() - exact[p]) < 4 * se, (p, values.mean(), exact[p], se)


def test_grows_with_n_when_the_rm_is_the_gold():
    rm, _ = _pool(p=4, m=50, seed=4)
    values = [expected_best_of_n(rm, rm, n) for n in (1, 2, 4, 8, 16, 50)]
    assert all((b >= a - 1e-12).all() for a, b in itertools.pairwise(values))


def test_first_n_best_uses_only_the_first_n_samples():
    rm = np.array([[0.0, 2.0, 1.0, 9.0], [5.0, 1.0, 7.0, 0.0]])
    gold = np.array([[10.0, 20.0, 30.0, 40.0], [50.0, 60.0, 70.0, 80.0]])
    np.testing.assert_array_equal(first_n_best(rm, gold, 1), [10.0, 50.0])
    np.testing.assert_array_equal(first_n_best(rm, gold, 3), [20.0, 70.0])
    np.testing.assert_array_equal(first_n_best(rm, gold, 4), [40.0, 70.0])


def test_log2_n_and_validation():
    assert log2_n(1) == 0.0 and log2_n(64) == pytest.approx(6.0)
    rm, gold = _pool(m=4)
    with pytest.raises(ValueError):
        log2_n(0)
    for bad_n in (0, 5):
        with pytest.raises(ValueError):
            expected_best_of_n(rm, gold, bad_n)
        with pytest.raises(ValueError):
            first_n_best(rm, gold, bad_n)
    with pytest.raises(ValueError):
        expected_best_of_n(rm, gold[:, :3], 2)
    with pytest.raises(ValueError):
        expected_best_of_n(rm[0], gold[0], 2)
    bad = rm.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        expected_best_of_n(bad, gold, 2)
