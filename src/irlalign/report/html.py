"""The report page: plain HTML with an inline stylesheet, no script, every figure a base64 PNG
data URI and every link an in-page anchor, so the one file is the whole report."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from irlalign.report.collect import Run, eval_scalars, eval_tables, final_metrics, find_best_of_n
from irlalign.report.figures import Figure, Report, RunFigures

STYLE = """
body { font-family: sans-serif; margin: 2em auto; padding: 0 1em; max-width: 1400px; color: #222; }
h1 { border-bottom: 2px solid #4c72b0; } h2 { margin-top: 2em; background: #eef2f8; padding: .3em; }
h3 { margin-bottom: .3em; } .path { color: #666; font-size: 90%; }
table { border-collapse: collapse; font-size: 85%; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-family: monospace; } th { background: #f4f4f4; }
.figs { display: flex; flex-wrap: wrap; gap: 8px; } .figs img { max-width: 100%; }
pre { background: #f8f8f8; padding: .5em; overflow-x: auto; font-size: 85%; }
.wide { overflow-x: auto; } .tok { padding: 0 1px; border-radius: 2px; white-space: pre-wrap; }
.note { color: #666; font-size: 85%; }
"""

MAX_SAMPLE_ROWS = 12
MAX_SAMPLE_STEPS = 20
MAX_CELL = 600
FOLD_ROWS = 30
FRONTIER_COLUMNS = (
    "normalised_score",
    "normalised_score_se",
    "gold_return",
    "self_bleu",
    "distinct_2",
    "entropy",
    "kl_expert",
)


def render(report: Report, title: str) -> str:
    runs = report.runs
    body = [f"<h1>{_e(title)}</h1>", _toc(runs)]
    if len(runs) > 1:
        body.append(_comparison(runs, report.overlays))
    body += [_run_sections(run, report.figures) for run in runs]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A table cell: floats to 4 significant digits, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    text = str(value)
    return text if len(text) <= MAX_CELL else text[:MAX_CELL] + " …"


def _cell(value: Any) -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return f'<td class="num">{_e(fmt(value))}</td>' if numeric else f"<td>{_e(fmt(value))}</td>"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f'<div class="wide"><table><tr>{head}</tr>{body}</table></div>'


def figures(figs: Sequence[Figure]) -> str:
    imgs = "".join(
        f'<img src="data:image/png;base64,{base64.b64encode(f.png).decode("ascii")}" '
        f'alt="{_e(f.title)}" title="{_e(f.title)}">'
        for f in figs
    )
    return f'<div class="figs">{imgs}</div>' if figs else ""


def _toc(runs: Sequence[Run]) -> str:
    items = "".join(
        f'<li><a href="#{r.anchor}">{_e(r.name)}</a>{_toc(r.children) if r.children else ""}</li>'
        for r in runs
    )
    return f"<ul>{items}</ul>"


def _comparison(runs: Sequence[Run], overlays: Sequence[Figure]) -> str:
    """Final metrics side by side (a row per metric, a column per run) and overlaid curves."""
    finals = [final_metrics(r) for r in runs]
    keys = sorted({k for f in finals for k in f})
    rows = [[k, *(f.get(k) for f in finals)] for k in keys]
    parts = ["<h2>comparison</h2>", "<h3>final metrics (eval.json)</h3>"]
    parts.append(table(["metric", *(r.name for r in runs)], rows) if rows else _none("eval.json"))
    if overlays:
        parts += ["<h3>curves the runs share</h3>", figures(overlays)]
    return "\n".join(parts)


def _none(what: str) -> str:
    return f'<p class="note">no {_e(what)}</p>'


def _run_sections(run: Run, all_figs: Mapping[str, RunFigures]) -> str:
    parts = [_run_section(run, all_figs[run.anchor])]
    parts += [_run_sections(child, all_figs) for child in run.children]
    return "\n".join(parts)


def _run_section(run: Run, figs: RunFigures) -> str:
    parts = [f'<h2 id="{run.anchor}">{_e(run.name)}</h2>', f'<p class="path">{_e(run.path)}</p>']
    if run.children:
        links = ", ".join(f'<a href="#{c.anchor}">{_e(c.name)}</a>' for c in run.children)
        parts.append(f"<p>child runs: {links}</p>")
    if run.config is not None:
        parts.append(
            f"<details><summary>config.yaml</summary><pre>{_e(run.config)}</pre></details>"
        )
    if figs.curves:
        parts += ["<h3>learning curves (metrics.jsonl)</h3>", figures(figs.curves)]
    parts.append(_eval(run, figs.tables))
    parts.append(_best_of_n(run, figs.best_of_n))
    parts.append(_frontiers(run, figs.frontier))
    if run.samples:
        parts += ["<h3>samples (samples.jsonl)</h3>", samples_html(run.samples)]
    return "\n".join(p for p in parts if p)


def _best_of_n(run: Run, figs: Sequence[Figure]) -> str:
    found = find_best_of_n(run.eval)
    if not found:
        return ""
    parts = ["<h3>best-of-N</h3>", figures(figs)]
    for where, bon in found.items():
        curves = bon["curves"]
        grid = sorted({p["n"] for points in curves.values() for p in points})
        rows = []
        for name, points in curves.items():
            by_n = {p["n"]: p.get("normalised_score") for p in points}
            rows.append([name, *(by_n.get(n) for n in grid)])
        label = f" ({where})" if where else ""
        parts.append(f'<p class="note">normalised score by N{_e(label)}</p>')
        parts.append(table(["ranker", *(f"N={n}" for n in grid)], rows))
    return "\n".join(parts)


def _frontiers(run: Run, figs: Sequence[Figure]) -> str:
    if not run.frontiers:
        return ""
    parts = ["<h3>quality–diversity frontier</h3>", figures(figs)]
    for name, data in run.frontiers.items():
        parts.append(f'<p class="note">{_e(name)}: policy {_e(data.get("policy", "?"))}</p>')
        rows = [
            [
                "greedy" if r.get("decoding") == "greedy" else r.get("temperature"),
                *(r.get(c) for c in FRONTIER_COLUMNS),
            ]
            for r in data["rows"]
        ]
        parts.append(table(["decoding / T", *FRONTIER_COLUMNS], rows))
    return "\n".join(parts)


def _eval(run: Run, figs: Sequence[Figure]) -> str:
    if not run.eval:
        return ""
    parts = []
    for where, records in eval_tables(run.eval).items():
        columns = list(dict.fromkeys(k for rec in records.values() for k in rec))
        rows = [[name, *(rec.get(c) for c in columns)] for name, rec in records.items()]
        parts += [f"<h3>{_e(where)} (eval.json)</h3>", table(["name", *columns], rows)]
    parts.append(figures(figs))
    scalars = eval_scalars(run.eval)
    if len(scalars) > FOLD_ROWS:  # a pipeline's summary: open on demand, not in the way
        summary = f"{len(scalars)} values"
        listing = table(["key", "value"], scalars.items())
        parts += [
            "<h3>final metrics (eval.json)</h3>",
            f"<details><summary>{summary}</summary>{listing}</details>",
        ]
    elif scalars:
        parts += ["<h3>final metrics (eval.json)</h3>", table(["key", "value"], scalars.items())]
    return "\n".join(parts)


def samples_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """A table of samples; rows of an RL loop (with `step`) by step, the latest step open."""
    if "step" not in rows[0]:
        note = f"first {MAX_SAMPLE_ROWS} of {len(rows)} rows" if len(rows) > MAX_SAMPLE_ROWS else ""
        return _sample_table(rows[:MAX_SAMPLE_ROWS]) + (
            f'<p class="note">{note}</p>' if note else ""
        )
    by_step = rows_by_step(rows)
    steps = list(by_step)[-MAX_SAMPLE_STEPS:]
    parts = []
    if len(by_step) > len(steps):
        parts.append(f'<p class="note">the last {len(steps)} of {len(by_step)} logged steps</p>')
    for i, step in enumerate(steps):
        open_ = " open" if i == len(steps) - 1 else ""
        parts.append(
            f"<details{open_}><summary>step {_e(step)} ({len(by_step[step])} samples)</summary>"
            f"{_sample_table(by_step[step][:MAX_SAMPLE_ROWS])}</details>"
        )
    return "\n".join(parts)


def rows_by_step(rows: Sequence[Mapping[str, Any]]) -> dict[Any, list[Mapping[str, Any]]]:
    """Rows grouped by step, in step order. A resumed run redoes the steps after its checkpoint
    with the same prompts and seeds, so a step logged twice repeats its rows: kept once."""
    by_step: dict[Any, list[Mapping[str, Any]]] = {}
    seen = set()
    for row in rows:
        key = json.dumps(row, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            by_step.setdefault(row.get("step"), []).append(row)
    return dict(sorted(by_step.items(), key=lambda kv: _step_key(kv[0])))


def _step_key(step: Any) -> tuple[int, float]:
    return (0, float(step)) if isinstance(step, int | float) else (1, 0.0)


def _sample_table(rows: Sequence[Mapping[str, Any]]) -> str:
    hidden = {"tokens", "token_rewards", "step"}
    columns = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in hidden]
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            if c == "completion" and row.get("tokens") and row.get("token_rewards"):
                cells.append(f"<td>{token_spans(row['tokens'], row['token_rewards'])}</td>")
            else:
                cells.append(_cell(row.get(c)))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="wide"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def token_spans(tokens: Sequence[str], rewards: Sequence[float]) -> str:
    """Each token shaded by its reward (green positive, red negative, opacity by size relative
    to the row's largest), its value in the tooltip."""
    scale = max((abs(r) for r in rewards if math.isfinite(r)), default=0.0) or 1.0
    spans = []
    for tok, r in zip(tokens, rewards, strict=False):
        alpha = min(abs(r) / scale, 1.0) * 0.6 if math.isfinite(r) else 0.0
        rgb = "40,160,60" if r >= 0 else "220,50,50"
        spans.append(
            f'<span class="tok" style="background: rgba({rgb},{alpha:.2f})" '
            f'title="{r:+.4g}">{_e(tok)}</span>'
        )
    # Word-level vocabularies decode tokens without their separating space; BPE pieces carry it.
    sep = "" if any(t[:1].isspace() for t in tokens) else " "
    return sep.join(spans)
