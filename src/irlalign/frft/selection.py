"""FRFT subset selection: which pool records refit the reward model in a round.

Filtered Reward Fine-Tuning (Krishna & Sahoo, arXiv 2412.10529). Every pool record i
has one policy sample, compared by cosine similarity with the record's stored chosen response,
s_w[i], and with its stored rejected response, s_l[i]. A rule returns n = K + k_val unique pool
indices; `split_train_val` then cuts them into the RM's train and validation parts.

All rules share the signature ``rule(s_w, s_l, n, *, tau=0.8, seed=0) -> Selection`` (a rule
ignores what it does not use). Rankings are descending and stable: ties go to the lower pool index,
because near-ties at the top are common (several records printed as 0.9943 in the authors'
round-0 data) and the selection must not depend on the sort implementation. Threshold rules that
find fewer than n records return what they found, report the shortfall and warn; nothing is ever
filled in silently.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

DEFAULT_TAU = 0.8
COSINE_EPS = 1e-8


class SelectionShortfallWarning(UserWarning):
    """A threshold rule found fewer than the requested number of records."""


@dataclass(frozen=True)
class Selection:
    """The records a rule picked.

    indices: (m,) int64 unique pool indices, in selection order (best first for ranking rules).
    scores: (m,) float64, the number each record was ranked or gated by (rule-specific; see the
        rule's docstring), aligned with `indices`.
    shortfall: how many fewer than the requested n were found (threshold rules only; else 0).
    """

    indices: np.ndarray
    scores: np.ndarray
    shortfall: int = 0

    @property
    def requested(self) -> int:
        """n as asked for: returned records plus the shortfall."""
        return len(self.indices) + self.shortfall


class SubsetSelector(Protocol):
    """A selection rule: similarity arrays (N,) and a count in, `Selection` out."""

    def __call__(
        self,
        s_w: np.ndarray,
        s_l: np.ndarray,
        n: int,
        *,
        tau: float = DEFAULT_TAU,
        seed: int = 0,
    ) -> Selection: ...


# ---------------------------------------------------------------------------------------------
# helpers


def _check(s_w: Any, s_l: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 copies of the two similarity arrays."""
    w = np.asarray(s_w, dtype=np.float64)
    lo = np.asarray(s_l, dtype=np.float64)
    if w.ndim != 1 or w.shape != lo.shape:
        raise ValueError(f"s_w and s_l must be 1-d of the same length, got {w.shape}, {lo.shape}")
    # NaN compares false everywhere and would sort unpredictably: refuse it rather than rank it.
    if not (np.isfinite(w).all() and np.isfinite(lo).all()):
        raise ValueError("s_w and s_l must be finite")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if n > len(w):
        raise ValueError(f"n={n} exceeds the pool of {len(w)} scored records")
    return w, lo


def rank_descending(score: np.ndarray) -> np.ndarray:
    """Pool indices by descending score; equal scores in ascending index order.

    A stable sort of -score keeps equal keys in index order; -0.0 == 0.0 so signed zeros tie.
    """
    return np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")


def _with_shortfall(picked: np.ndarray, score: np.ndarray, n: int, rule: str) -> Selection:
    """A threshold rule's result: what it found, with the shortfall reported and warned about."""
    picked = picked[:n].astype(np.int64)
    shortfall = n - len(picked)
    if shortfall:
        warnings.warn(
            f"{rule}: only {len(picked)} of {n} requested records passed the threshold "
            f"(shortfall {shortfall}); returning those, not filling up",
            SelectionShortfallWarning,
            stacklevel=3,
        )
    return Selection(indices=picked, scores=score[picked], shortfall=shortfall)


def _top(score: np.ndarray, n: int) -> Selection:
    picked = rank_descending(score)[:n].astype(np.int64)
    return Selection(indices=picked, scores=score[picked])


# ---------------------------------------------------------------------------------------------
# rules


def top_mean(s_w: Any, s_l: Any, n: int, *, tau: float = DEFAULT_TAU, seed: int = 0) -> Selection:
    """Default rule: the top n by m_i = (s_w[i] + s_l[i]) / 2; scores are m_i.

    Rank-based, so it needs no embedder-specific threshold. It orders exactly as the sum does,
    hence equals `both_gt_top_sum` whenever the n-th largest sum exceeds 1 + tau (each s <= 1,
    so s_w + s_l > 1 + tau forces both terms above tau).
    """
    w, lo = _check(s_w, s_l, n)
    return _top((w + lo) / 2.0, n)


def either_ge_in_order(
    s_w: Any, s_l: Any, n: int, *, tau: float = DEFAULT_TAU, seed: int = 0
) -> Selection:
    """The original online filter: walk the pool in index order, keep i if
    s_w[i] >= tau or s_l[i] >= tau, stop at n. Scores are max(s_w[i], s_l[i]), the gated value.
    """
    w, lo = _check(s_w, s_l, n)
    passing = np.flatnonzero((w >= tau) | (lo >= tau))
    return _with_shortfall(passing, np.maximum(w, lo), n, "either_ge_in_order")


def both_gt_top_sum(
    s_w: Any, s_l: Any, n: int, *, tau: float = DEFAULT_TAU, seed: int = 0
) -> Selection:
    """Original "Type 1": keep i if s_w[i] > tau and s_l[i] > tau (strict), then the top n by
    s_w[i] + s_l[i]; scores are the sums."""
    w, lo = _check(s_w, s_l, n)
    total = w + lo
    order = rank_descending(total)
    passing = order[(w[order] > tau) & (lo[order] > tau)]
    return _with_shortfall(passing, total, n, "both_gt_top_sum")


def half_chosen_half_rejected(
    s_w: Any, s_l: Any, n: int, *, tau: float = DEFAULT_TAU, seed: int = 0
) -> Selection:
    """Original "Type 2", deduplicated: take alternately the best untaken record by s_w and the
    best untaken record by s_l (chosen side first, so it gets ceil(n/2)) until n unique records.

    The original concatenated the two top-n/2 lists with duplicates, which later shrank its
    validation set; skipping taken indices keeps exactly n unique ones. Each record's score is
    the similarity of the ranking it was taken from (s_w or s_l).
    """
    w, lo = _check(s_w, s_l, n)
    rankings = (rank_descending(w), rank_descending(lo))
    sources = (w, lo)
    taken = np.zeros(len(w), dtype=bool)
    cursor = [0, 0]
    indices: list[int] = []
    scores: list[float] = []
    while len(indices) < n:
        side = len(indices) % 2
        ranking = rankings[side]
        # n <= N guarantees an untaken record remains in either ranking.
        while taken[ranking[cursor[side]]]:
            cursor[side] += 1
        i = int(ranking[cursor[side]])
        taken[i] = True
        indices.append(i)
        scores.append(float(sources[side][i]))
    return Selection(np.asarray(indices, dtype=np.int64), np.asarray(scores, dtype=np.float64))


def top_rejected(
    s_w: Any, s_l: Any, n: int, *, tau: float = DEFAULT_TAU, seed: int = 0
) -> Selection:
    """Original "Type 3": the top n by s_l (sample most like the rejected response); scores s_l."""
    _, lo = _check(s_w, s_l, n)
    return _top(lo, n)


def top_chosen(s_w: Any, s_l: Any, n: int, *, tau: float = DEFAULT_TAU, seed: int = 0) -> Selection:
    """Original "Type 4": the top n by s_w (sample most like the chosen response); scores s_w."""
    w, _ = _check(s_w, s_l, n)
    return _top(w, n)


def random(s_w: Any, s_l: Any, n: int, *, tau: float = DEFAULT_TAU, seed: int = 0) -> Selection:
    """Baseline (b): n records drawn uniformly without replacement with
    ``np.random.default_rng(seed)``, in draw order. Scores are (s_w + s_l)/2, for the record
    only: they play no part in the draw."""
    w, lo = _check(s_w, s_l, n)
    picked = np.random.default_rng(seed).choice(len(w), size=n, replace=False).astype(np.int64)
    return Selection(indices=picked, scores=((w + lo) / 2.0)[picked])


SELECTORS: dict[str, SubsetSelector] = {
    "top_mean": top_mean,
    "either_ge_in_order": either_ge_in_order,
    "both_gt_top_sum": both_gt_top_sum,
    "half_chosen_half_rejected": half_chosen_half_rejected,
    "top_rejected": top_rejected,
    "top_chosen": top_chosen,
    "random": random,
}
THRESHOLD_RULES = frozenset({"either_ge_in_order", "both_gt_top_sum"})


def get_selector(name: str) -> SubsetSelector:
    """The rule called `name`; the error lists the valid names."""
    try:
        return SELECTORS[name]
    except KeyError:
        valid = sorted(SELECTORS)
        raise ValueError(f"unknown selection rule {name!r}; choose from {valid}") from None


# ---------------------------------------------------------------------------------------------
# counts, split, scores


def resolve_count(k: int | float, total: int) -> int:
    """K (or k_val) as a count: an int is a count, a float in [0, 1] a fraction of `total`,
    rounded to the nearest int (round, not floor: 0.29 * 100 is 28.999... in floating point).
    """
    if isinstance(k, bool):
        raise TypeError("a count must be an int or a fraction, not a bool")
    if isinstance(k, int | np.integer):
        if k < 0:
            raise ValueError(f"count must be >= 0, got {k}")
        return int(k)
    if isinstance(k, float | np.floating):
        if not 0.0 <= k <= 1.0:
            raise ValueError(f"a fraction must lie in [0, 1], got {k}; give a count as an int")
        return int(round(float(k) * total))
    raise TypeError(f"count must be an int or a float fraction, got {type(k).__name__}")


def split_train_val(indices: Any, k_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of the selected pool indices into (train, val), val of size k_val.

    Duplicates are dropped first (keeping first occurrences) so that no record can land on both
    sides. The randomness decides only membership: each part keeps the selection order.
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    _, first = np.unique(idx, return_index=True)
    unique = idx[np.sort(first)]
    if len(unique) < len(idx):
        warnings.warn(
            f"split_train_val: dropped {len(idx) - len(unique)} duplicate indices before the split",
            stacklevel=2,
        )
    if isinstance(k_val, bool) or not isinstance(k_val, int | np.integer) or k_val < 0:
        raise ValueError(f"k_val must be a non-negative int (see resolve_count), got {k_val!r}")
    if k_val > len(unique):
        raise ValueError(f"k_val={k_val} exceeds the {len(unique)} unique selected records")
    is_val = np.zeros(len(unique), dtype=bool)
    is_val[np.random.default_rng(seed).permutation(len(unique))[:k_val]] = True
    return unique[~is_val], unique[is_val]


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor; selection itself stays torch-free
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a, b) = a·b / (max(|a|, eps) max(|b|, eps)) over the last axis."""
    norms = np.maximum(np.linalg.norm(a, axis=-1), COSINE_EPS)
    norms = norms * np.maximum(np.linalg.norm(b, axis=-1), COSINE_EPS)
    return np.sum(a * b, axis=-1) / norms


def cosine_scores(
    sample_emb: Any, chosen_emb: Any, rejected_emb: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise s_w[i] = cos(e(y_i), e(y_i^w)) and s_l[i] = cos(e(y_i), e(y_i^l)), float64 (N,).

    `sample_emb` is (N, d), or (N, S, d) for S policy samples per prompt; then the scores are
    averaged over the samples, s_w[i] = (1/S) Σ_s cos(e(y_is), e(y_i^w)) (mean of cosines, not
    cosine of the mean embedding). Accepts numpy arrays or torch tensors.
    """
    sample, chosen, rejected = (_as_array(x) for x in (sample_emb, chosen_emb, rejected_emb))
    if chosen.ndim != 2 or chosen.shape != rejected.shape:
        raise ValueError(f"chosen/rejected must be (N, d), got {chosen.shape}, {rejected.shape}")
    if sample.ndim == 2:
        sample = sample[:, None, :]
    if sample.ndim != 3 or sample.shape[0] != chosen.shape[0] or sample.shape[2] != chosen.shape[1]:
        raise ValueError(f"sample must be (N, d) or (N, S, d) matching {chosen.shape}")
    s_w = _cosine(sample, chosen[:, None, :]).mean(axis=1)
    s_l = _cosine(sample, rejected[:, None, :]).mean(axis=1)
    return s_w, s_l
