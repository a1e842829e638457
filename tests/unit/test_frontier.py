"""Quality–diversity frontiers: the reach-curve and the dominance rule on hand-made curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from irlalign.eval.frontier import compare_frontiers, frontier_points, reach, upper_envelope

# A falling trade-off curve: more diverse, lower quality.
BASE = [(0.2, 0.9), (0.5, 0.7), (0.8, 0.3)]


def test_reach_is_the_best_quality_at_or_above_a_diversity():
    assert reach(BASE, 0.0) == pytest.approx(0.9)  # left of the start: the best point
    assert reach(BASE, 0.35) == pytest.approx(0.8)  # interpolated on the first segment
    assert reach(BASE, 0.65) == pytest.approx(0.5)
    assert reach(BASE, 0.8) == pytest.approx(0.3)
    assert reach(BASE, 0.81) == -math.inf  # past the most diverse point: not reached


def test_envelope_fills_a_dip_and_keeps_the_rising_part():
    # Quality rises from 0.4 to 0.8 between diversities 0.5 and 0.7: everything left of 0.7
    # reaches at least 0.8, and the first segment (slope −1.5) is cut where it falls through
    # 0.8, at 0.1 + 0.2 / 1.5.
    points = [(0.1, 1.0), (0.5, 0.4), (0.7, 0.8), (0.9, 0.2)]
    cut = 0.1 + 0.2 / 1.5
    div = [0.1, 0.15, cut, 0.5, 0.7, 0.8, 0.9]
    expected = [1.0, 0.925, 0.8, 0.8, 0.8, 0.5, 0.2]
    assert [reach(points, d) for d in div] == pytest.approx(expected)
    env_div, env_qual = upper_envelope(points)
    assert np.all(np.diff(env_div) > 0) and np.all(np.diff(env_qual) <= 0)
    assert cut == pytest.approx(env_div[1])
    # Unsorted input and duplicated diversities (the best quality counts) give the same curve.
    shuffled = [points[2], points[0], (0.5, 0.1), points[3], points[1]]
    assert [reach(shuffled, d) for d in div] == pytest.approx(expected)


def test_dominating_and_dominated():
    better = [(d, q + 0.1) for d, q in BASE]
    out = compare_frontiers(better, BASE)
    assert (out.dominates, out.relation) == ("A", "A dominates")
    assert out.b_unreached == () and len(out.a_unreached) == 3 and out.crossings == ()
    out = compare_frontiers(BASE, better)
    assert (out.dominates, out.relation) == ("B", "B dominates")
    assert out.a_unreached == () and len(out.b_unreached) == 3


def test_dominance_along_the_curve_not_only_at_the_same_diversities():
    # One point above BASE's curve and as diverse as its most diverse point: it reaches every
    # point of BASE (trading diversity away is free), and BASE reaches none of its point.
    out = compare_frontiers([(0.8, 0.95)], BASE)
    assert out.dominates == "A"
    # Equal quality, more diversity at one end only: still strictly better somewhere.
    out = compare_frontiers([*BASE[:2], (0.9, 0.3)], BASE)
    assert out.dominates == "A" and out.a_unreached == ((0.9, 0.3),)
    # B's points lie on A's interpolated curve (between A's measured points): A dominates.
    a = [(0.2, 0.9), (0.8, 0.5)]
    out = compare_frontiers(a, [(0.5, 0.7)])
    assert out.dominates == "A" and out.b_unreached == ()


def test_crossing_curves_report_where_they_cross():
    a = [(0.2, 1.0), (0.8, 0.2)]  # better at low diversity
    b = [(0.2, 0.8), (0.8, 0.4)]  # better at high diversity
    out = compare_frontiers(a, b)
    assert (out.dominates, out.relation) == ("neither", "crossing")
    assert out.a_unreached == ((0.2, 1.0),) and out.b_unreached == ((0.8, 0.4),)
    # 1.0 − (4/3)(d − 0.2) = 0.8 − (2/3)(d − 0.2)  ⇒  d = 0.5, quality 0.6
    ((d, q),) = out.crossings
    assert d == pytest.approx(0.5) and q == pytest.approx(0.6)
    flipped = compare_frontiers(b, a)
    assert flipped.relation == "crossing" and flipped.crossings == out.crossings


def test_crossing_without_an_intersection_when_the_ranges_differ():
    # A is better wherever both are defined, but B goes on to higher diversity.
    out = compare_frontiers(BASE[:2], [(0.2, 0.5), (0.5, 0.4), (0.8, 0.1)])
    assert out.relation == "crossing" and out.crossings == ()
    assert out.b_unreached == ((0.8, 0.1),)


def test_identical_and_equivalent_frontiers():
    out = compare_frontiers(BASE, list(BASE))
    assert (out.dominates, out.relation) == ("neither", "equivalent")
    assert out.crossings == out.a_unreached == out.b_unreached == ()
    # An extra point under the curve changes nothing.
    assert compare_frontiers([*BASE, (0.5, 0.1)], BASE).relation == "equivalent"


def test_tolerance_absorbs_small_quality_differences():
    noisy = [(d, q + 0.01) for d, q in BASE]
    assert compare_frontiers(noisy, BASE).dominates == "A"
    assert compare_frontiers(noisy, BASE, tol=0.02).relation == "equivalent"
    with pytest.raises(ValueError, match="tol"):
        compare_frontiers(noisy, BASE, tol=-1.0)


def test_bad_frontiers_are_refused():
    with pytest.raises(ValueError, match="at least one point"):
        compare_frontiers([], BASE)
    with pytest.raises(ValueError, match="finite"):
        compare_frontiers([(0.1, float("nan"))], BASE)


def test_frontier_points_from_rows():
    rows = [
        {"self_bleu": 0.2, "entropy": 2.0, "distinct_2": 0.5, "normalised_score": 0.6},
        {"self_bleu": 1.0, "entropy": 0.0, "distinct_2": 0.1, "normalised_score": 0.9},
        {"self_bleu": float("nan"), "entropy": 2.5, "distinct_2": 0.6, "normalised_score": 0.5},
    ]
    assert frontier_points(rows) == [(pytest.approx(0.8), 0.6), (0.0, 0.9)]
    assert frontier_points(rows, "entropy") == [(2.0, 0.6), (0.0, 0.9), (2.5, 0.5)]
    assert frontier_points(rows, "distinct_2", "self_bleu")[0] == (0.5, 0.2)
    with pytest.raises(ValueError, match="diversity axis"):
        frontier_points(rows, "perplexity")
