"""Two CPU processes under `accelerate launch` run IQLearn, AVA-p (extra heads under DDP) and the
RLOO loop through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("method", "data", "method_cfg", "logged"),
    [
        ("iqlearn", "demos", {"lam": 0.1}, "loss/td"),
        ("ava", "preferences", {"rwt_rescale": True}, "loss/cer"),
        (
            "rloo",
            "demos",
            {"k": 2, "prompts_per_step": 2, "sampling": {"max_new_tokens": 8}},
            "rl/reward",
        ),
    ],
)
def test_two_process_accelerate_launch(method, data, method_cfg, logged, smoke_task_dir, tmp_path):
    launcher = Path(sys.executable).parent / "accelerate"
    if not launcher.exists() and shutil.which("accelerate") is None:
        pytest.skip("accelerate launcher not installed")
    out = tmp_path / "run"
    cfg = {
        "model": {"path": str(smoke_task_dir / "pi_init")},
        "data": {"train": str(smoke_task_dir / data), "max_length": 32},
        "method": method_cfg,
        "training": {
            "output_dir": str(out),
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "logging_steps": 1,
            "save_steps": 2,
            "use_cpu": True,
            "disable_tqdm": True,
            "seed": 0,
        },
    }
    if method == "rloo":  # the loop's own `training` section; the gold reward needs the task
        del cfg["training"]["per_device_train_batch_size"]
        cfg["eval"] = {"synthetic_task": str(smoke_task_dir), "samples": 1}
    cfg_file = tmp_path / "iq.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    cmd = [
        str(launcher),
        "launch",
        "--config_file",  # the shipped two-process CPU setup (`--cpu` alone starts one process)
        str(Path(__file__).resolve().parents[2] / "configs" / "accelerate" / "cpu_2proc.yaml"),
        "-m",
        "irlalign.cli.main",
        "train",
        method,
        "--config",
        str(cfg_file),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in logs if logged in r]
    assert [r["step"] for r in steps] == [1, 2]  # rank 0 writes once per step
    assert json.loads((out / "env.json").read_text())["world_size"] == 2
    assert (out / "checkpoints" / "final" / "config.json").exists()
    if method == "ava":  # the heads are saved beside the model folder by rank 0
        assert (out / "checkpoints" / "final" / "irl_heads.safetensors").exists()
    assert json.loads((out / "eval.json").read_text())["final_checkpoint"].endswith("final")
