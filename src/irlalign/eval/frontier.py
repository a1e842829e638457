"""Quality–diversity frontiers and when one dominates another.

A frontier is a list of (diversity, quality) points measured for one policy at several decoding
temperatures; higher is better on both axes. Between measured points a frontier is the
piecewise-linear curve through them, taken in order of diversity.

What a frontier *reaches* at diversity d is the best quality of any point on its curve with
diversity at least d: giving up diversity is always allowed, so a point left of the curve's
start is reached at the curve's best quality, and a point right of its end is not reached.

A dominates B when every measured point of B is reached by A's curve and some measured point of
A is not reached by B's. When each reaches all of the other's points the two are equivalent;
when neither does, they cross, and the diversities where the two reach-curves swap order are
reported. Pure numpy: no model, no task.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DIVERSITY_AXES",
    "FrontierComparison",
    "compare_frontiers",
    "frontier_points",
    "reach",
    "upper_envelope",
]

Point = tuple[float, float]

# Diversity axes read from a frontier row, each oriented so that higher is more diverse.
DIVERSITY_AXES = {
    "self_bleu": lambda row: 1.0 - row["self_bleu"],
    "entropy": lambda row: row["entropy"],
    "distinct_2": lambda row: row["distinct_2"],
}


@dataclass(frozen=True)
class FrontierComparison:
    """The verdict of `compare_frontiers(a, b)`.

    `dominates` is "A", "B" or "neither"; `relation` is "A dominates", "B dominates",
    "equivalent" (each reaches every point of the other) or "crossing" (neither does).
    `crossings` lists the (diversity, quality) points where the two reach-curves swap order; it
    is filled only for "crossing", and may be empty there when one frontier is better wherever
    both are defined but the other extends to higher diversity. `a_unreached` are the points
    of A that B does not reach, `b_unreached` those of B that A does not reach.
    """

    dominates: str
    relation: str
    crossings: tuple[Point, ...]
    a_unreached: tuple[Point, ...]
    b_unreached: tuple[Point, ...]


def _clean(points: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Diversities (strictly increasing) and qualities; equal diversities keep the best quality."""
    arr = np.asarray(points, dtype=float).reshape(-1, 2)
    if len(arr) == 0:
        raise ValueError("a frontier needs at least one point")
    if not np.isfinite(arr).all():
        raise ValueError(f"frontier points must be finite, got {arr.tolist()}")
    div, first = np.unique(arr[:, 0], return_inverse=True)
    qual = np.full(len(div), -np.inf)
    np.maximum.at(qual, first, arr[:, 1])
    return div, qual


def upper_envelope(points: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (diversity, quality) of the reach-curve d ↦ `reach(points, d)` on the curve's
    diversity range: non-increasing, piecewise linear, equal to the curve where it falls."""
    div, qual = _clean(points)
    env = [(div[-1], qual[-1])]
    best = qual[-1]  # the best quality at or right of the current vertex
    for i in range(len(div) - 2, -1, -1):
        d1, q1, d2, q2 = div[i], qual[i], div[i + 1], qual[i + 1]
        if q1 > best:
            if q2 < best:  # the segment rises through `best` inside (d1, d2)
                env.append((d2 - (best - q2) / (q1 - q2) * (d2 - d1), best))
            env.append((d1, q1))
            best = q1
        else:
            env.append((d1, best))
    out = np.array(env[::-1])
    return out[:, 0], out[:, 1]


def _reach(env: tuple[np.ndarray, np.ndarray], d: np.ndarray) -> np.ndarray:
    div, qual = env
    d = np.asarray(d, dtype=float)
    inside = np.interp(d, div, qual)  # constant (the best quality) left of the start
    return np.where(d > div[-1], -np.inf, inside)


def reach(points: Sequence[Sequence[float]], diversity: float) -> float:
    """Best quality on the frontier's curve at diversity ≥ `diversity` (−inf past its end)."""
    return float(_reach(upper_envelope(points), np.array(diversity)))


def _unreached(env, points: Sequence[Sequence[float]], tol: float) -> tuple[Point, ...]:
    arr = np.asarray(points, dtype=float).reshape(-1, 2)
    short = _reach(env, arr[:, 0]) < arr[:, 1] - tol
    return tuple((float(d), float(q)) for d, q in arr[short])


def _crossings(env_a, env_b, tol: float) -> tuple[Point, ...]:
    """Where reach_A − reach_B changes sign, on the diversities where both are defined."""
    hi = min(env_a[0][-1], env_b[0][-1])
    lo = min(env_a[0][0], env_b[0][0])
    knots = np.unique(np.concatenate([env_a[0], env_b[0], [lo, hi]]))
    knots = knots[(knots >= lo) & (knots <= hi)]
    gap = _reach(env_a, knots) - _reach(env_b, knots)
    sign = np.where(np.abs(gap) <= tol, 0, np.sign(gap))
    out, last = [], None  # `last`: index of the last knot with a nonzero sign
    for i, s in enumerate(sign):
        if s == 0:
            continue
        if last is not None and s != sign[last]:
            if i == last + 1:  # the gap is linear between neighbouring knots
                x = knots[last] + gap[last] / (gap[last] - gap[i]) * (knots[i] - knots[last])
            else:  # touches zero in between: the first zero knot
                x = knots[last + 1]
            out.append((float(x), float(_reach(env_a, np.array(x)))))
        last = i
    return tuple(out)


def compare_frontiers(
    a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], tol: float = 0.0
) -> FrontierComparison:
    """Compare two frontiers of (diversity, quality) points (higher is better on both).

    A point counts as reached when the other curve's reach at its diversity is at least its
    quality minus `tol` (a margin for Monte-Carlo noise in the quality; 0 = exact).
    """
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    env_a, env_b = upper_envelope(a), upper_envelope(b)
    a_unreached = _unreached(env_b, a, tol)
    b_unreached = _unreached(env_a, b, tol)
    if not a_unreached and not b_unreached:
        return FrontierComparison("neither", "equivalent", (), (), ())
    if not b_unreached:
        return FrontierComparison("A", "A dominates", (), a_unreached, ())
    if not a_unreached:
        return FrontierComparison("B", "B dominates", (), (), b_unreached)
    crossings = _crossings(env_a, env_b, tol)
    return FrontierComparison("neither", "crossing", crossings, a_unreached, b_unreached)


def frontier_points(
    rows: Sequence[Mapping], diversity: str = "self_bleu", quality: str = "normalised_score"
) -> list[Point]:
    """(diversity, quality) points of frontier rows (as written by `synthetic eval
    --temperatures`); `diversity` is a key of `DIVERSITY_AXES` (self-BLEU enters as
    1 − self-BLEU). Rows where either value is missing or not finite are left out."""
    if diversity not in DIVERSITY_AXES:
        raise ValueError(
            f"unknown diversity axis {diversity!r}; choose from {list(DIVERSITY_AXES)}"
        )
    points = []
    for row in rows:
        if row.get(quality) is None or row.get(diversity) is None:
            continue
        d, q = float(DIVERSITY_AXES[diversity](row)), float(row[quality])
        if math.isfinite(d) and math.isfinite(q):
            points.append((d, q))
    return points
