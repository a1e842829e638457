"""What each FRFT refit trains on, and for how many optimiser steps.

Two refit modes (numpy only):

- ``subset``: the K selected pairs only (the paper's w_k: 1 on the selection, 0 elsewhere).
- ``upweighted``: the whole training pool, each selected pair repeated so that it counts
  ``weight`` times in the Bradley–Terry loss (a soft w_k: `weight` on the selection, 1 elsewhere).
  Repetition is exact in expectation under the trainer's shuffled sampling, so it needs no
  weighted loss; it is why the weight is an integer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

REFIT_MODES = ("subset", "upweighted")
# transformers.TrainingArguments' default batch size, for the step count when none is set.
DEFAULT_BATCH_SIZE = 8


def default_upweight(n_pool: int, n_selected: int) -> int:
    """round((N − K) / K), at least 1: the selected pairs then make up about half of the refit's
    rows (K·w ≈ N − K), whatever the pool and subset sizes."""
    if n_selected < 1:
        return 1
    return max(1, round((n_pool - n_selected) / n_selected))


def refit_rows(n_pool: int, selected: Any, mode: str, weight: int | None = None) -> np.ndarray:
    """Pool indices of the refit's training rows.

    ``subset``: the selected indices. ``upweighted``: every pool index once, then each selected
    index ``weight − 1`` more times, so it appears ``weight`` times in all (``weight`` None:
    `default_upweight`).
    """
    sel = np.asarray(selected, dtype=np.int64).reshape(-1)
    if len(np.unique(sel)) != len(sel) or (len(sel) and (sel.min() < 0 or sel.max() >= n_pool)):
        raise ValueError(f"selected indices must be unique and lie in [0, {n_pool})")
    if mode == "subset":
        return sel
    if mode != "upweighted":
        raise ValueError(f"refit mode must be one of {', '.join(REFIT_MODES)}, got {mode!r}")
    w = default_upweight(n_pool, len(sel)) if weight is None else weight
    if isinstance(w, bool) or not isinstance(w, int | np.integer) or w < 1:
        raise ValueError(f"upweight must be an int >= 1, got {w!r}")
    return np.concatenate([np.arange(n_pool, dtype=np.int64), np.repeat(sel, int(w) - 1)])


def refit_training(
    training: dict[str, Any], n_rows: int, passes: float
) -> tuple[dict[str, Any], int | None]:
    """The refit's `TrainingArguments` keywords and its optimiser step count.

    A positive ``max_steps`` is kept. Otherwise, unless ``num_train_epochs`` is given (then the
    trainer counts epochs and the step count is None here), ``max_steps`` is set to
    ceil(passes · n_rows / (batch size · gradient accumulation)): ``passes`` passes over the
    refit's rows, so the step count scales with the selected subset.
    """
    steps = training.get("max_steps")
    if steps is not None and int(steps) > 0:
        return dict(training), int(steps)
    if "num_train_epochs" in training:
        return dict(training), None
    batch = int(training.get("per_device_train_batch_size", DEFAULT_BATCH_SIZE))
    batch *= int(training.get("gradient_accumulation_steps", 1))
    steps = max(1, math.ceil(passes * n_rows / batch))
    return {**training, "max_steps": steps}, steps
