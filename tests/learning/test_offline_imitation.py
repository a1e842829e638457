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


def _check(result: dict, floor: float) -> None:
    assert result["normalised_score"] > floor
    assert result["invalid_mass"] < 0.01  # the model stays inside the task's vocabulary


@pytest.mark.xdist_group("sft_run")  # one worker trains the shared π_SFT
def test_sft_learns_from_demonstrations(sft_run):
    _check(sft_run["synthetic"], 0.45)  # the session's shared π_SFT (tests/learning/conftest.py)


def test_iqlearn_learns_from_demonstrations(default_task_dir, tmp_path):
    method_name, raw = preset_config(
        "iqlearn",
        task_dir=default_task_dir,
        runs_root=tmp_path,
        output_dir=tmp_path / "iqlearn",
        seed=0,
        overrides={"method": {"lam": 0.1}, "training": {"save_steps": 10**6}},
    )
    _check(train(resolve(method_name, raw))["synthetic"], 0.35)
