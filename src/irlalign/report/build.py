"""`write_report`: read the runs, draw their figures, write the PNGs next to the HTML and the
HTML itself with every figure embedded (the page opens anywhere, offline, as one file)."""

from __future__ import annotations

from pathlib import Path

from irlalign.report.collect import Run, eval_tables, find_best_of_n, load_run, walk
from irlalign.report.figures import Figure, Report, RunFigures
from irlalign.report.html import render
from irlalign.report.plots import (
    GROUPS,
    bar_plot,
    best_of_n_plot,
    frontier_plot,
    group_curves,
    group_of,
    line_plot,
)


def write_report(
    paths: list[str | Path], out: str | Path, children: bool = True, title: str | None = None
) -> Path:
    """The report of ``paths`` (run folders) at ``out``; its PNGs in `<out stem>_files/`."""
    out = Path(out)
    runs = [load_run(p, _name(p, paths), children) for p in paths]
    report = collect_figures(runs)
    files = out.parent / f"{out.stem}_files"
    files.mkdir(parents=True, exist_ok=True)
    for fig in all_figures(report):
        (files / fig.name).write_bytes(fig.png)
    out.write_text(render(report, title or "irlalign report"), encoding="utf-8")
    return out


def _name(path: str | Path, paths: list[str | Path]) -> str:
    """A run's display name: its folder name, or its path where two folders share a name."""
    names = [Path(p).resolve().name for p in paths]
    name = Path(path).resolve().name
    return str(path).rstrip("/") if names.count(name) > 1 else name


def collect_figures(runs: list[Run]) -> Report:
    figures = {run.anchor: run_figures(run) for run in walk(runs)}
    return Report(runs=runs, figures=figures, overlays=overlay_figures(runs))


def all_figures(report: Report) -> list[Figure]:
    out = list(report.overlays)
    for figs in report.figures.values():
        out += figs.curves + figs.best_of_n + figs.frontier + figs.tables
    return out


def run_figures(run: Run) -> RunFigures:
    figs = RunFigures()
    for group, series in group_curves(run.curves).items():
        png = line_plot(f"{run.name}: {group}", series)
        figs.curves.append(Figure(_file(run, group), group, png))
    for where, bon in find_best_of_n(run.eval).items():
        title = f"best-of-N ({where})" if where else "best-of-N"
        png = best_of_n_plot(bon["curves"], f"{run.name}: {title}")
        figs.best_of_n.append(Figure(_file(run, title), title, png))
    if run.frontiers:
        rows = {name: data["rows"] for name, data in run.frontiers.items()}
        figs.frontier.append(Figure(_file(run, "frontier"), "frontier", frontier_plot(rows)))
    for where, table in eval_tables(run.eval).items():
        scores = {name: rec.get("normalised_score") for name, rec in table.items()}
        scores = {k: float(v) for k, v in scores.items() if isinstance(v, int | float)}
        if len(scores) >= 2:
            title = f"normalised score ({where})"
            png = bar_plot(f"{run.name}: {title}", scores)
            figs.tables.append(Figure(_file(run, title), title, png))
    return figs


def overlay_figures(runs: list[Run]) -> list[Figure]:
    """One figure per metrics key that two or more of the given runs log, a line per run."""
    if len(runs) < 2:
        return []
    keys = sorted({k for run in runs for k in run.curves})
    shared = [k for k in keys if sum(k in run.curves for run in runs) >= 2]
    order = {g: i for i, g in enumerate(t for t, _ in GROUPS)}
    shared.sort(key=lambda k: (order.get(group_of(k), len(order)), k))
    out = []
    for key in shared:
        series = {run.name: run.curves[key] for run in runs if key in run.curves}
        png = line_plot(key, series)
        out.append(Figure(f"compare_{_slug(key)}.png", key, png))
    return out


def _file(run: Run, what: str) -> str:
    return f"{_slug(run.name)}_{_slug(what)}.png"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_") or "figure"
