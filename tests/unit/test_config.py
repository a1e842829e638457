"""Config parsing details that users hit from YAML and the command line."""

from __future__ import annotations

import pytest


def test_exponent_floats_in_configs_are_numbers():
    from irlalign.config import coerce_numbers

    raw = {"training": {"learning_rate": "1e-4", "output_dir": "runs/1e5x", "x": ["2E3"]}}
    assert coerce_numbers(raw) == {
        "training": {"learning_rate": 1e-4, "output_dir": "runs/1e5x", "x": [2000.0]}
    }


def test_warmup_stable_decay_needs_a_decay_that_fits_the_run():
    from irlalign.loops.setup import LoopArgs

    wsd = {"output_dir": "x", "lr_scheduler_type": "warmup_stable_decay", "max_steps": 100}
    with pytest.raises(ValueError, match="num_decay_steps"):
        LoopArgs(**wsd)
    with pytest.raises(ValueError, match="must not exceed max_steps"):
        LoopArgs(**wsd, warmup_steps=5, lr_scheduler_kwargs={"num_decay_steps": 96})
    args = LoopArgs(**wsd, warmup_steps=5, lr_scheduler_kwargs={"num_decay_steps": 95})
    assert args.lr_scheduler_kwargs == {"num_decay_steps": 95}
