"""Best-of-N as a pure selection over reward-model scores, and its KL bound.

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
