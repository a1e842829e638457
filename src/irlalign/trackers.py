"""Where trackers write: inside the run folder, for the `Trainer` methods and the loops alike.

`training.report_to: tensorboard` puts the event files in `<run>/tb/`; `wandb` keeps its local
files in `<run>/wandb/`. Without this, transformers writes TensorBoard files under
`<run>/checkpoints/runs/<date>_<host>/` and wandb into the working directory, so two runs
launched from one folder mix their files. A directory the user set through
`TENSORBOARD_LOGGING_DIR` or `WANDB_DIR` is left as it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TRACKER_DIR = "tb"  # TensorBoard event files, under the run folder


def tracker_dir(run_dir: str | Path) -> Path:
    """The folder TensorBoard event files of the run in ``run_dir`` go to."""
    return Path(run_dir) / TRACKER_DIR


def reported(report_to: Any) -> list[str]:
    """`report_to` as a list of tracker names; [] for none."""
    if report_to in (None, "none", [], ()):
        return []
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    return [n for n in names if n != "none"]


def trainer_environment(run_dir: str | Path) -> dict[str, str]:
    """The environment transformers' tracker callbacks read for their directories (it has no
    `logging_dir` argument any more)."""
    return {"TENSORBOARD_LOGGING_DIR": str(tracker_dir(run_dir)), "WANDB_DIR": str(run_dir)}


@contextmanager
def trainer_trackers(run_dir: str | Path) -> Iterator[None]:
    """Inside: transformers' TensorBoard and wandb callbacks write into the run folder (the
    variables a user set are kept); the environment is restored after."""
    saved = {k: os.environ.get(k) for k in trainer_environment(run_dir)}
    for key, value in trainer_environment(run_dir).items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def loop_trackers(report_to: Any, run_dir: str | Path) -> tuple[list[Any], dict[str, Any]]:
    """accelerate's `log_with` and `init_trackers(init_kwargs=...)` for a loop: TensorBoard as a
    tracker writing to `<run>/tb/` (accelerate would use `<run>/<project name>/`), wandb with its
    files in the run folder; other names pass through."""
    names = reported(report_to)
    log_with: list[Any] = []
    for name in names:
        if name == "tensorboard":
            from accelerate.tracking import TensorBoardTracker

            run_dir = Path(run_dir)
            log_with.append(TensorBoardTracker(TRACKER_DIR, str(run_dir)))
        else:
            log_with.append(name)
    init_kwargs = {"wandb": {"dir": str(run_dir)}} if "wandb" in names else {}
    return log_with, init_kwargs
