"""The finite guard: a run whose loss or gradient goes NaN/inf stops with one error line and a
non-zero exit before the weights change, keeps its finite checkpoints and writes no `final`;
with `skip_nonfinite_steps` it skips such steps instead."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from irlalign.cli.main import main

# Learning rates at which the tiny model's loss overflows within a few steps.
HUGE_LR = 1e12


def _raw(task: Path, out: Path, method: str) -> dict:
    raw = {
        "model": {"path": str(task / "pi_init")},
        "data": {"train": str(task / "demos")},
        "method": {},
        "training": {
            "output_dir": str(out),
            "max_steps": 8,
            "learning_rate": HUGE_LR,
            "save_steps": 1,
            "logging_steps": 1,
            "seed": 0,
            "use_cpu": True,
            "disable_tqdm": True,
        },
    }
    if method == "sft":
        raw["training"].update(per_device_train_batch_size=4, max_grad_norm=0.0)
    else:
        raw["method"].update(reward_model="gold", k=2, prompts_per_step=2)
        raw["method"]["sampling"] = {"max_new_tokens": 8}
        raw["training"]["max_grad_norm"] = 1e30  # no clipping: let the update blow up
        raw["eval"] = {"synthetic_task": str(task), "samples": 1}
    return raw


def _write(raw: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _all_finite(folder: Path) -> bool:
    tensors = load_file(folder / "model.safetensors")
    return all(torch.isfinite(t).all() for t in tensors.values())


@pytest.mark.parametrize("method", ["sft", "rloo"])
def test_diverging_run_stops_with_an_error_and_keeps_finite_checkpoints(
    method, smoke_task_dir, tmp_path, capsys
):
    out = tmp_path / "run"
    code = main(
        ["train", method, "--config", str(_write(_raw(smoke_task_dir, out, method), tmp_path))]
    )
    err = capsys.readouterr().err
    assert code == 1
    lines = [x for x in err.splitlines() if x.startswith("irlalign: error:")]
    assert len(lines) == 1 and "non-finite" in lines[0], err
    assert "Traceback" not in err
    assert not (out / "checkpoints" / "final").exists()
    saved = [p for p in (out / "checkpoints").iterdir() if (p / "model.safetensors").exists()]
    assert saved and all(_all_finite(p) for p in saved)


def test_skipped_nonfinite_steps_are_counted_and_bounded(smoke_task_dir, tmp_path, capsys):
    raw = _raw(smoke_task_dir, tmp_path / "run", "sft")
    raw["training"]["skip_nonfinite_steps"] = 2
    code = main(["train", "sft", "--config", str(_write(raw, tmp_path))])
    out = capsys.readouterr()
    assert code == 1  # the learning rate keeps producing bad steps: 2 skipped, the third stops
    assert out.out.count("skipped (") == 2
    assert "irlalign: error: step" in out.err


def test_the_guard_allows_finite_norms_and_counts_skips():
    from irlalign.guard import FiniteGuard, NonFiniteError

    guard = FiniteGuard(skips=1)
    assert guard.allows(3.0, 1)
    assert not guard.allows(math.nan, 2)
    with pytest.raises(NonFiniteError, match="step 3"):
        guard.allows(math.inf, 3)
