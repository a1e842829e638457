"""Read run folders into plain data for the report: the config text, the learning curves of
`metrics.jsonl`, the scalars and tables of `eval.json`, best-of-N curves, quality–diversity
frontier rows, `samples.jsonl`, and the child runs of a pipeline folder. Only the run-folder
files are read (no model, no torch), so a report of a finished run takes seconds."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Keys of metrics.jsonl that are bookkeeping, not curves worth a plot.
SKIP_PREFIXES = ("time/", "data/", "train_", "total_flos")
SKIP_KEYS = {"step", "epoch"}
# Folders of a run that hold weights or trainer state, never child runs.
NOT_RUNS = {"checkpoints", "trainer", "task"}
RUN_FILES = ("config.yaml", "metrics.jsonl", "eval.json")
MAX_CHILD_DEPTH = 4

Scalar = float | int | str | bool | None


@dataclass
class Run:
    """What the report shows of one run folder (every field may be empty)."""

    path: Path
    name: str
    config: str | None = None
    curves: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    frontiers: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    children: list[Run] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        """An HTML id for the run's section."""
        return "run-" + "".join(c if c.isalnum() else "-" for c in self.name).strip("-")


def load_run(path: str | Path, name: str | None = None, children: bool = True) -> Run:
    """One run folder and (with ``children``) its child runs, each named by its relative path."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a run folder")
    name = name or path.resolve().name
    config = path / "config.yaml"
    run = Run(
        path=path,
        name=name,
        config=config.read_text() if config.is_file() else None,
        curves=read_curves(path / "metrics.jsonl"),
        eval=read_json(path / "eval.json") or {},
        frontiers=find_frontiers(path),
        samples=read_jsonl(path / "samples.jsonl"),
    )
    if children:
        run.children = [
            load_run(child, f"{name}/{child.relative_to(path).as_posix()}")
            for child in child_run_dirs(path)
        ]
    return run


def read_json(path: Path) -> Any:
    """A JSON file, or None when it is missing or unreadable (a run still being written)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The object lines of a JSONL file; a torn last line (a run still writing) is skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_curves(path: Path) -> dict[str, tuple[list[float], list[float]]]:
    """Every finite numeric key of `metrics.jsonl` as (steps, values); rows without a step (a
    summary table such as the quickstart's) are not curves."""
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for row in read_jsonl(path):
        step = row.get("step")
        if not _is_number(step):
            continue
        for key, value in row.items():
            if _is_curve_key(key) and _is_number(value) and math.isfinite(value):
                xs, ys = curves.setdefault(key, ([], []))
                xs.append(float(step))
                ys.append(float(value))
    return curves


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_curve_key(key: str) -> bool:
    return key not in SKIP_KEYS and not key.startswith(SKIP_PREFIXES)


def is_run_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in RUN_FILES)


def child_run_dirs(path: Path, depth: int = 0) -> list[Path]:
    """Run folders below ``path``; a child run's own children are left to its own listing, and
    folders between (a pipeline's `round_00/`) are looked through."""
    found: list[Path] = []
    if depth >= MAX_CHILD_DEPTH:
        return found
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.is_symlink()):
        if sub.name in NOT_RUNS or sub.name.startswith((".", "checkpoint")):
            continue
        if is_run_dir(sub):
            found.append(sub)
        else:
            found.extend(child_run_dirs(sub, depth + 1))
    return found


def find_frontiers(path: Path) -> dict[str, dict[str, Any]]:
    """The `irlalign synthetic eval --temperatures ... --out FILE` results in the folder, by
    file name: JSON objects whose `rows` are per-decoding metric rows."""
    found = {}
    for file in sorted(path.glob("*.json")):
        if file.name in ("eval.json", "env.json") or file.stat().st_size > 1_000_000:
            continue
        data = read_json(file)
        if is_frontier(data):
            found[file.name] = data
    return found


def is_frontier(data: Any) -> bool:
    rows = data.get("rows") if isinstance(data, dict) else None
    return (
        isinstance(rows, list)
        and bool(rows)
        and all(isinstance(r, dict) and "decoding" in r and "temperature" in r for r in rows)
    )


def find_best_of_n(data: Any, where: str = "") -> dict[str, dict[str, Any]]:
    """Every `best_of_n` result with `curves` in an eval.json, by where it sits ("" at the top,
    "afd" in the quickstart's summary)."""
    found: dict[str, dict[str, Any]] = {}
    if not isinstance(data, dict):
        return found
    bon = data.get("best_of_n")
    if isinstance(bon, dict) and isinstance(bon.get("curves"), dict):
        found[where] = bon
    for key, value in data.items():
        if key != "best_of_n" and isinstance(value, dict):
            found.update(find_best_of_n(value, f"{where}.{key}" if where else key))
    return found


def eval_tables(data: Any, where: str = "") -> dict[str, dict[str, dict[str, Scalar]]]:
    """Mappings of two or more named records of scalars (the quickstart's policy rows, reward
    models, AfD's reward models): each is shown as one table, rows = names."""
    found: dict[str, dict[str, dict[str, Scalar]]] = {}
    if not isinstance(data, dict):
        return found
    for key, value in data.items():
        at = f"{where}.{key}" if where else key
        if _is_record_table(value):
            found[at] = {name: flatten(rec) for name, rec in value.items()}
        elif isinstance(value, dict) and key != "best_of_n":
            found.update(eval_tables(value, at))
    return found


def _is_record_table(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) >= 2
        and all(isinstance(v, dict) and v and _all_scalars(v) for v in value.values())
    )


def _all_scalars(record: dict[str, Any]) -> bool:
    return all(not isinstance(v, list) for v in flatten(record, keep_lists=True).values())


def eval_scalars(data: Any, prefix: str = "") -> dict[str, Scalar]:
    """The scalars of an eval.json under dotted keys, without what the tables and the best-of-N
    curves already show."""
    out: dict[str, Scalar] = {}
    if not isinstance(data, dict):
        return out
    for key, value in data.items():
        at = f"{prefix}.{key}" if prefix else str(key)
        if _is_record_table(value):
            continue
        if key == "best_of_n" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "curves"}
        if isinstance(value, dict):
            out.update(eval_scalars(value, at))
        else:
            out.update(flatten(value, at))
    return out


def flatten(data: Any, prefix: str = "", keep_lists: bool = False) -> dict[str, Any]:
    """Nested dicts and lists as {dotted.key[i]: scalar}; lists of scalars are joined (or kept
    with ``keep_lists``)."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key), keep_lists))
    elif isinstance(data, list) and any(isinstance(v, dict | list) for v in data):
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}[{i}]", keep_lists))
    elif isinstance(data, list):
        out[prefix] = data if keep_lists else ", ".join(str(v) for v in data)
    else:
        out[prefix] = data
    return out


def final_metrics(run: Run) -> dict[str, Scalar]:
    """The numbers a comparison across runs lines up: eval.json's numeric scalars."""
    return {k: v for k, v in eval_scalars(run.eval).items() if _is_number(v)}


def walk(runs: list[Run]) -> list[Run]:
    """Every run and child run, depth first, in the order the report shows them."""
    out = []
    for run in runs:
        out.append(run)
        out.extend(walk(run.children))
    return out
