"""SFT and offline IQLearn learn the expert from the default synthetic demonstrations.

Both run the quickstart settings (300 steps, batch 32, lr 1e-3, 2,000 styled demonstrations,
seed 0). Measured normalised scores (seed 0, 256 prompts × 4 samples, se ≈ 0.02): SFT 0.603,
IQLearn λ=0.1 0.459. The thresholds sit well below with margin for platform noise; the
multi-seed comparison (and whether IQLearn beats SFT) lives in benchmarks/iqlearn_vs_sft.py.
"""

from __future__ import annotations

import pytest

from irlalign.demo.plan import preset_config
from irlalign.methods import resolve, train

pytestmark = pytest.mark.learning


@pytest.mark.parametrize(
    ("method", "cfg", "floor"),
    [
        ("sft", {}, 0.45),
        ("iqlearn", {"lam": 0.1}, 0.35),
    ],
)
def test_learns_from_demonstrations(method, cfg, floor, default_task_dir, tmp_path):
    method_name, raw = preset_config(
        method,
        task_dir=default_task_dir,
        runs_root=tmp_path,
        output_dir=tmp_path / method,
        seed=0,
        overrides={"method": cfg, "training": {"save_steps": 10**6}},
    )
    result = train(resolve(method_name, raw))["synthetic"]
    assert result["normalised_score"] > floor
    assert result["invalid_mass"] < 0.01  # the model stays inside the task's vocabulary
