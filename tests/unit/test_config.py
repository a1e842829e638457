"""Config parsing details that users hit from YAML and the command line."""

from __future__ import annotations


def test_exponent_floats_in_configs_are_numbers():
    from irlalign.config import coerce_numbers

    raw = {"training": {"learning_rate": "1e-4", "output_dir": "runs/1e5x", "x": ["2E3"]}}
    assert coerce_numbers(raw) == {
        "training": {"learning_rate": 1e-4, "output_dir": "runs/1e5x", "x": [2000.0]}
    }
