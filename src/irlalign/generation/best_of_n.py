"""Best-of-N as a pure selection over reward-model scores, its KL bound, and estimators of the
expected gold score of best-of-N from a pool of M >= N samples per prompt.

KL(π_BoN ‖ π) ≤ ln N − (N − 1)/N (Beirami et al. 2024, arXiv 2401.01879, which shows the
commonly quoted ln N − (N − 1)/N is an upper bound on the true KL).
"""

from __future__ import annotations

import math

import numpy as np


def best_of_n(scores: np.ndarray) -> np.ndarray:
    """(P, N) scores of N candidates per prompt -> (P,) index of the best (first on ties)."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise ValueError(f"scores must be (prompts, N) with N >= 1, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    return scores.argmax(axis=1)


def kl_bound(n: int) -> float:
    """ln N − (N − 1)/N: the usual bound on KL(best-of-N ‖ base policy), in nats."""
    if n < 1:
        raise ValueError("N must be >= 1")
    return math.log(n) - (n - 1) / n


def log2_n(n: int) -> float:
    """log₂ N: the x axis the AfD paper labels "KL (Nat)", whose points match log₂ N rather than
    the KL bound; report it beside raw N and :func:`kl_bound`, never instead of them."""
    if n < 1:
        raise ValueError("N must be >= 1")
    return math.log2(n)


def _log_comb(a: np.ndarray, b: int) -> np.ndarray:
    """log C(a, b) for integer arrays a >= b >= 0, through log-gamma (no overflow for large M)."""
    lg = np.vectorize(math.lgamma, otypes=[float])
    return lg(a + 1.0) - math.lgamma(b + 1.0) - lg(a - b + 1.0)


def argmax_probabilities(m: int, n: int) -> np.ndarray:
    """(M,) probability that the candidate of ascending rank i (0-based) is the best of a
    uniformly random size-n subset of M: p_i = C(i, n − 1) / C(M, n), 0 for i < n − 1.

    (It is the best iff it is drawn and the other n − 1 draws all rank below it.) Computed in
    log space and renormalised by log-sum-exp, so it sums to 1 to rounding even for M in the
    thousands, where the binomials overflow a float.
    """
    if not 1 <= n <= m:
        raise ValueError(f"need 1 <= n <= M, got n={n}, M={m}")
    log_w = np.full(m, -np.inf)
    ranks = np.arange(n - 1, m, dtype=float)
    log_w[n - 1 :] = _log_comb(ranks, n - 1)
    log_w -= log_w.max()
    w = np.exp(log_w)
    return w / w.sum()


def _check_pool(rm_scores: np.ndarray, gold: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    rm_scores, gold = np.asarray(rm_scores, dtype=float), np.asarray(gold, dtype=float)
    if rm_scores.ndim != 2 or rm_scores.shape != gold.shape:
        raise ValueError(
            f"rm_scores and gold must both be (prompts, M), got {rm_scores.shape} and {gold.shape}"
        )
    if not (np.isfinite(rm_scores).all() and np.isfinite(gold).all()):
        raise ValueError("rm_scores and gold must be finite")
    if not 1 <= n <= rm_scores.shape[1]:
        raise ValueError(f"need 1 <= n <= M = {rm_scores.shape[1]}, got n={n}")
    return rm_scores, gold


def expected_best_of_n(rm_scores: np.ndarray, gold: np.ndarray, n: int) -> np.ndarray:
    """Exact E[gold(argmax_RM S)] over uniformly random size-n subsets S of each prompt's pool.

    ``rm_scores``, ``gold`` (P, M): M samples per prompt; returns (P,). With the pool sorted by
    RM score ascending, E = Σ_i p_i·gold_(i), p from :func:`argmax_probabilities`; this uses
    every sample (unlike :func:`first_n_best`) and has no Monte-Carlo noise. n = 1 gives the
    pool mean, n = M the gold score of the RM's argmax.

    Ties in RM score follow :func:`best_of_n`, which picks the earliest candidate of a subset
    taken in pool order: tied candidates are ranked so that the one earlier in the pool ranks
    higher, which makes the estimate exactly the mean of ``best_of_n`` over all subsets.
    """
    rm_scores, gold = _check_pool(rm_scores, gold, n)
    m = rm_scores.shape[1]
    # lexsort's last key is the primary one: RM score ascending, then pool index descending.
    pool_index = np.broadcast_to(np.arange(m), rm_scores.shape)
    order = np.lexsort((-pool_index, rm_scores), axis=-1)
    ranked_gold = np.take_along_axis(gold, order, axis=-1)
    return ranked_gold @ argmax_probabilities(m, n)


def first_n_best(rm_scores: np.ndarray, gold: np.ndarray, n: int) -> np.ndarray:
    """Gold score of the RM's best among each prompt's first n samples, (P,): one draw of
    best-of-n per prompt (unbiased but noisy; :func:`expected_best_of_n` averages it exactly)."""
    rm_scores, gold = _check_pool(rm_scores, gold, n)
    picks = best_of_n(rm_scores[:, :n])
    return np.take_along_axis(gold[:, :n], picks[:, None], axis=-1)[:, 0]
