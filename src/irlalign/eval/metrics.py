"""Pure evaluation metrics over tokenised text and score lists.

Everything here depends only on numpy and the standard library, so it can run without
scipy or sacrebleu. Token sequences are lists (or tuples) of strings.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = [
    "distinct_n",
    "mean_and_se",
    "pairwise_accuracy",
    "per_group_means",
    "self_bleu",
    "sentence_bleu",
    "spearman",
    "win_rate",
]


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    """Count the n-grams of one token sequence."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def distinct_n(sequences: Sequence[Sequence[str]], n: int) -> float:
    """Distinct-n: unique n-grams over all sequences divided by the total n-gram count.

    Returns 0.0 when the sequences hold no n-grams at all.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    counts: Counter[tuple[str, ...]] = Counter()
    for seq in sequences:
        counts.update(_ngrams(seq, n))
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def _closest_ref_len(hyp_len: int, ref_lens: Sequence[int]) -> int:
    """Reference length closest to ``hyp_len``; ties go to the shorter reference."""
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


def sentence_bleu(
    hypothesis: Sequence[str], references: Sequence[Sequence[str]], max_order: int = 4
) -> float:
    """Sentence-level BLEU in [0, 1] of one hypothesis against several references.

    Modified n-gram precisions (counts clipped by the maximum count in any reference) for
    n = 1..max_order, geometric mean, brevity penalty against the closest reference length
    (ties -> shorter). Smoothing follows sacrebleu's ``sentence_bleu`` ("exp", Chen & Cherry
    2014 method 3): the k-th order with zero matches gets precision 1 / (2^k * total).
    Like sacrebleu's effective order, orders for which the hypothesis has no n-grams (it is
    shorter than the order) are left out of the mean. An empty hypothesis, or an empty
    reference list, scores 0.0.
    """
    if max_order < 1:
        raise ValueError(f"max_order must be >= 1, got {max_order}")
    hyp_len = len(hypothesis)
    if hyp_len == 0 or not references:
        return 0.0
    log_sum, eff_order, zero_matches = 0.0, 0, 0
    for n in range(1, max_order + 1):
        hyp_counts = _ngrams(hypothesis, n)
        total = sum(hyp_counts.values())
        if total == 0:
            break
        max_ref: Counter[tuple[str, ...]] = Counter()
        for ref in references:
            max_ref |= _ngrams(ref, n)
        matches = sum(min(c, max_ref[g]) for g, c in hyp_counts.items())
        if matches == 0:
            zero_matches += 1
            log_sum += -math.log(2.0**zero_matches * total)
        else:
            log_sum += math.log(matches / total)
        eff_order = n
    ref_len = _closest_ref_len(hyp_len, [len(r) for r in references])
    bp = 1.0 if hyp_len >= ref_len else math.exp(1.0 - ref_len / hyp_len)
    return bp * math.exp(log_sum / eff_order)


def self_bleu(groups: Sequence[Sequence[Sequence[str]]], max_order: int = 4) -> float:
    """Within-input self-BLEU (lower = more diverse).

    For each group (the K samples for one prompt), the mean over i of
    ``sentence_bleu(g[i], [g[j] for j != i])``; then the mean over groups. Groups with
    fewer than two samples are skipped; returns nan when no group qualifies.
    """
    per_group = []
    for group in groups:
        if len(group) < 2:
            continue
        scores = [
            sentence_bleu(hyp, [ref for j, ref in enumerate(group) if j != i], max_order)
            for i, hyp in enumerate(group)
        ]
        per_group.append(sum(scores) / len(scores))
    return sum(per_group) / len(per_group) if per_group else float("nan")


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the average of the ranks they span."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    avg = ends - (counts - 1) / 2.0
    return avg[inverse.reshape(-1)]


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation: Pearson correlation of average ranks (ties averaged).

    Returns nan with fewer than two points or when either input has zero variance.
    """
    xa = np.asarray(x, dtype=float).ravel()
    ya = np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape:
        raise ValueError(f"length mismatch: {xa.size} vs {ya.size}")
    if xa.size < 2:
        return float("nan")
    rx = _average_ranks(xa) - (xa.size + 1) / 2.0
    ry = _average_ranks(ya) - (ya.size + 1) / 2.0
    denom = math.sqrt(float(np.dot(rx, rx)) * float(np.dot(ry, ry)))
    if denom == 0.0:
        return float("nan")
    return float(np.clip(np.dot(rx, ry) / denom, -1.0, 1.0))


def pairwise_accuracy(
    score_a: Sequence[float] | np.ndarray,
    score_b: Sequence[float] | np.ndarray,
    true_a: Sequence[float] | np.ndarray,
    true_b: Sequence[float] | np.ndarray,
) -> float:
    """Fraction of pairs whose score order agrees with the true order.

    Only pairs with ``true_a != true_b`` count; a tie in the scores counts as 0.5.
    Returns nan when no pair has distinct true values.
    """
    arrays = [np.asarray(v, dtype=float).ravel() for v in (score_a, score_b, true_a, true_b)]
    if len({a.size for a in arrays}) != 1:
        raise ValueError("all four inputs must have the same length")
    s_sign = np.sign(arrays[0] - arrays[1])
    t_sign = np.sign(arrays[2] - arrays[3])
    keep = t_sign != 0
    if not keep.any():
        return float("nan")
    credit = np.where(s_sign[keep] == 0, 0.5, (s_sign[keep] == t_sign[keep]).astype(float))
    return float(credit.mean())


def mean_and_se(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and standard error (sample std, ddof=1, over sqrt(n)).

    The standard error is 0.0 for a single value; both are nan for no values.
    """
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        return float("nan"), float("nan")
    mean = float(arr.mean())
    if arr.size == 1:
        return mean, 0.0
    return mean, float(arr.std(ddof=1) / math.sqrt(arr.size))


def per_group_means(values: Sequence[float] | np.ndarray, groups: int) -> np.ndarray:
    """(groups,) means of ``values`` laid out group by group, ``len(values) // groups`` each
    (the K samples of each prompt, prompt after prompt)."""
    arr = np.asarray(values, dtype=float).ravel()
    if groups < 1 or arr.size % groups:
        raise ValueError(f"{arr.size} values do not split into {groups} equal groups")
    return arr.reshape(groups, -1).mean(axis=1)


def win_rate(
    scores: Sequence[float] | np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    groups: int,
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """How often a response beats the baseline's response to the same prompt and sample index
    (ties count 0.5), with a percentile bootstrap interval over the prompts.

    ``scores`` and ``baseline`` hold the paired judge scores group by group (``groups`` prompts,
    the same number of samples each). The interval resamples whole prompts with replacement,
    seeded, because samples of one prompt are not independent of each other. Returns
    `win_rate`, `ci_low`, `ci_high`, `tie_rate` and `n_pairs`.
    """
    a = np.asarray(scores, dtype=float).ravel()
    b = np.asarray(baseline, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"length mismatch: {a.size} scores vs {b.size} baseline scores")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    credit = np.where(a == b, 0.5, (a > b).astype(float))
    per_prompt = per_group_means(credit, groups)
    picks = np.random.default_rng(seed).integers(0, groups, size=(resamples, groups))
    boot = per_prompt[picks].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return {
        "win_rate": float(per_prompt.mean()),
        "ci_low": float(np.percentile(boot, tail)),
        "ci_high": float(np.percentile(boot, 100 - tail)),
        "tie_rate": float(np.mean(a == b)),
        "n_pairs": int(a.size),
    }
