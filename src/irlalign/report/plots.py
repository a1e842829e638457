"""The report's figures as PNG bytes (matplotlib's Agg canvas on a `Figure`: no pyplot state,
no display needed): grouped learning curves, best-of-N curves, quality–diversity frontiers."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

Series = tuple[Sequence[float], Sequence[float]]

DPI = 80
SIZE = (6.4, 3.6)

# Curve groups in the order the report shows them: (title, test on a metrics key).
GROUPS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("loss", lambda k: k == "loss" or k.startswith("loss/")),
    ("reward & return", lambda k: k.startswith(("rl/reward", "rl/return"))),
    ("KL to the reference", lambda k: k.startswith("policy/kl")),
    ("eval: normalised score & gap closed", lambda k: k in EVAL_SCORE),
    ("eval: return & objective", lambda k: k in ("eval/gold_return", "eval/objective")),
    ("eval: KL", lambda k: k.startswith("eval/kl")),
    ("eval: diversity & other", lambda k: k.startswith("eval/")),
    ("learning rate", lambda k: k in ("learning_rate", "rl/lr", "lr")),
)
EVAL_SCORE = ("eval/normalised_score", "eval/gap_closed")


def group_of(key: str) -> str:
    """The plot a metrics key belongs to: one of GROUPS, else its prefix before '/'."""
    for title, test in GROUPS:
        if test(key):
            return title
    return key.partition("/")[0]


def group_curves(curves: Mapping[str, Series]) -> dict[str, dict[str, Series]]:
    """Curves by group, the GROUPS first (in their order), then the rest by name."""
    groups: dict[str, dict[str, Series]] = {}
    for key in sorted(curves):
        groups.setdefault(group_of(key), {})[key] = curves[key]
    order = [t for t, _ in GROUPS if t in groups] + sorted(
        g for g in groups if g not in dict(GROUPS)
    )
    return {g: groups[g] for g in order}


def to_png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _axes(title: str, xlabel: str, ylabel: str = ""):
    fig = Figure(figsize=SIZE, layout="constrained")  # one draw, unlike bbox_inches="tight"
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def line_plot(title: str, series: Mapping[str, Series], xlabel: str = "step") -> bytes:
    """One line per series; a single point is drawn as a marker so it stays visible."""
    fig, ax = _axes(title, xlabel)
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o" if len(xs) < 12 else None, markersize=3, label=label)
    if _spans_decades(series):
        ax.set_yscale("symlog")
    ax.legend(fontsize=7, loc="best")
    return to_png(fig)


def _spans_decades(series: Mapping[str, Series]) -> bool:
    """Whether a linear axis would flatten some lines to zero (e.g. a learning rate of 1e-5 next
    to a loss of 3): the largest line is 1000× the smallest."""
    peaks = [max(abs(y) for y in ys) for _, ys in series.values() if ys]
    peaks = [p for p in peaks if p > 0]
    return len(peaks) > 1 and max(peaks) / min(peaks) > 1e3


def best_of_n_plot(curves: Mapping[str, Sequence[Mapping[str, Any]]], title: str) -> bytes:
    """Normalised score against N (log₂ axis), one line per ranker."""
    fig, ax = _axes(title, "N (candidates per prompt)", "normalised score")
    for name, points in curves.items():
        ns = [p["n"] for p in points]
        ys = [p.get("normalised_score", math.nan) for p in points]
        ax.plot(ns, ys, marker="o", markersize=4, label=name)
    ax.set_xscale("log", base=2)
    ax.legend(fontsize=7, loc="best")
    return to_png(fig)


def frontier_plot(frontiers: Mapping[str, Sequence[Mapping[str, Any]]]) -> bytes:
    """Quality (normalised score) against diversity (1 − self-BLEU), each point labelled with
    its temperature; one line per frontier file."""
    fig, ax = _axes("quality–diversity frontier", "diversity (1 − self-BLEU)", "normalised score")
    for name, rows in frontiers.items():
        pts = [
            (1.0 - r["self_bleu"], r["normalised_score"], _decoding(r))
            for r in rows
            if r.get("self_bleu") is not None and r.get("normalised_score") is not None
        ]
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=4, label=name)
        for x, y, label in pts:
            ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.legend(fontsize=7, loc="best")
    return to_png(fig)


def _decoding(row: Mapping[str, Any]) -> str:
    return "greedy" if row.get("decoding") == "greedy" else f"T={row['temperature']:g}"


def bar_plot(title: str, values: Mapping[str, float]) -> bytes:
    """Horizontal bars, one per name (long policy names fit on the y axis)."""
    fig = Figure(figsize=(SIZE[0], 0.35 * len(values) + 1.0), layout="constrained")
    ax = fig.add_subplot()
    names = list(values)[::-1]
    ax.barh(names, [values[n] for n in names], color="#4c72b0")
    ax.set_title(title, fontsize=10)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(axis="y", labelsize=7)
    return to_png(fig)
