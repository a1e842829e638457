"""Where a model or dataset string points: a local path, or the Hugging Face Hub when written
`hub:<org>/<name>`.

A plain string is always a local path. Guessing that `models/pi_inti` might be a Hub id would
turn a typo into an offline crash, or online into a download of a stranger's repository, so the
Hub is reached only when asked for by name.
"""

from __future__ import annotations

import difflib
from pathlib import Path

HUB_PREFIX = "hub:"
# Extensions no Hub id carries: a missing `train.jsonl` gets no advice about the Hub.
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".arrow", ".yaml", ".yml")


def hub_id(spec: str) -> str | None:
    """The Hub id of a `hub:<org>/<name>` string, or None for a local path."""
    if not spec.startswith(HUB_PREFIX):
        return None
    name = spec[len(HUB_PREFIX) :].strip()
    if not name or name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise ValueError(f"{spec}: expected {HUB_PREFIX}<org>/<name> or {HUB_PREFIX}<name>")
    return name


def local_path(spec: str) -> Path:
    return Path(spec).expanduser()


def _near_misses(path: Path) -> list[str]:
    """Siblings of a missing path whose names are close to it: the likely intended path."""
    parent = path.parent
    if not parent.is_dir():
        return []
    try:
        names = [p.name for p in parent.iterdir()]
    except OSError:
        return []
    return [str(parent / n) for n in difflib.get_close_matches(path.name, names, n=2, cutoff=0.75)]


def _could_be_hub_id(spec: str) -> bool:
    return (
        not spec.startswith(("/", ".", "~"))
        and spec.count("/") <= 1
        and "\\" not in spec
        and Path(spec).suffix.lower() not in FILE_SUFFIXES
    )


def missing_message(spec: str, what: str) -> str:
    """`<spec>: no such <what>`, with near misses and, for a string shaped like a Hub id, how
    to ask for the Hub."""
    path = local_path(spec)
    hint = ""
    if close := _near_misses(path):
        hint = f" (did you mean {' or '.join(close)}?)"
    elif not path.parent.is_dir():
        hint = f" (its folder {path.parent} does not exist either)"
    if _could_be_hub_id(spec):
        hint += f"; a Hugging Face Hub id is written {HUB_PREFIX}{spec}"
    return f"{spec}: no such {what}{hint}"
