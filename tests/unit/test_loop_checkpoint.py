"""The online loops' state file is read without running code: a crafted `loop_state.pt` is
refused, and a state written by the loops reads back (RNG states included)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from irlalign.loops.checkpoint import (
    _numpy_state_as_tensors,
    _numpy_state_from_tensors,
    read_state,
)


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_state_file_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "loop_state.pt"
    torch.save({"state": {"step": 1}, "rng": _Payload(str(marker))}, path)
    with pytest.raises(ValueError, match="refused to load"):
        read_state(path)
    assert not marker.exists()


def test_a_loop_state_reads_back_with_its_rng_states(tmp_path):
    np.random.seed(3)
    random.seed(4)
    state = {
        "optimizer": {"state": {0: {"exp_avg": torch.ones(2)}}, "param_groups": [{"lr": 0.1}]},
        "state": {"step": 7, "reward_mean": 0.5, "reward_std": None, "extra": {"a": 1.0}},
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state_as_tensors(np.random.get_state()),
            "python": random.getstate(),
        },
    }
    torch.save(state, tmp_path / "s.pt")
    back = read_state(tmp_path / "s.pt")
    assert back["state"] == state["state"]
    np.random.set_state(_numpy_state_from_tensors(back["rng"]["numpy"]))
    expected = np.random.RandomState(3).random_sample(3)
    np.testing.assert_array_equal(np.random.random_sample(3), expected)
    random.setstate(back["rng"]["python"])
    assert random.random() == random.Random(4).random()


def test_console_line_keeps_small_numbers_readable():
    from irlalign.loops.step import console_line

    line = console_line({"step": 3, "rl/lr": 1e-6, "loss/total": 0.123456, "note": "x"})
    assert line == "rl/lr=1e-06 loss/total=0.1235"
