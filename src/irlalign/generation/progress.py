"""Progress bars for long sampling and scoring passes, shown on an interactive terminal only.

A bar goes to stderr and disappears when done (`leave=False`), so logs, tests and parallel
workers whose output is not a terminal get no bar lines at all; `TQDM_DISABLE=1` in the
environment turns every bar off.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Progress(Protocol):
    def update(self, n: int = 1) -> object: ...


class _NoBar:
    def update(self, n: int = 1) -> None:
        return None


def _disabled_by_environment() -> bool:
    # tqdm reads TQDM_DISABLE only for arguments left out, and `disable` is always given here.
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


@contextmanager
def progress_bar(
    total: int, desc: str, *, unit: str = "it", enabled: bool | None = None
) -> Iterator[Progress]:
    """A bar over ``total`` units that the caller advances with ``update(n)``.

    ``enabled``: None shows the bar on a terminal only (tqdm's own test of stderr), False never,
    True always; `TQDM_DISABLE` in the environment wins over both."""
    if enabled is False or total < 1 or _disabled_by_environment():
        yield _NoBar()
        return
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total,
        desc=desc,
        unit=unit,
        leave=False,
        dynamic_ncols=True,
        disable=None if enabled is None else False,
    )
    try:
        yield bar
    finally:
        bar.close()
