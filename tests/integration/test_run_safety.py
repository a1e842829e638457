"""A run folder survives kills, mistakes and tampering: a crafted loop state is refused before
it runs, a resume falls back past a checkpoint that a kill cut short and ends where an
uninterrupted run does (metrics logged once), another run's folder is refused untouched unless
overwritten, a held lock refuses a second run, and nothing is recorded before validation."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from conftest import raw_config
from irlalign.cli.main import main
from irlalign.methods import resolve, train
from irlalign.runs import LOCK


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cli(tmp_path, method: str, raw: dict, *overrides: str) -> int:
    cfg_file = tmp_path / f"{method}.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    return main(["train", method, "--config", str(cfg_file), *overrides])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("irlalign: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _rloo_raw(task: Path, out: Path, **training) -> dict:
    return {
        "model": {"path": str(task / "pi_init")},
        "data": {"train": str(task / "demos")},
        "method": {
            "reward_model": "gold",
            "k": 2,
            "prompts_per_step": 4,
            "sampling": {"max_new_tokens": 12},
        },
        "training": {
            "output_dir": str(out),
            "max_steps": 2,
            "learning_rate": 1e-2,
            "save_steps": 1,
            "seed": 0,
            "use_cpu": True,
            "disable_tqdm": True,
            **training,
        },
        "eval": {"synthetic_task": str(task), "samples": 1},
    }


def _lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _steps_and_keys(run: Path) -> list[tuple]:
    return [(r["step"], sorted(r)) for r in _lines(run)]


def _died_while_saving(full: Path, died: Path, newest: str, cut: str) -> None:
    """``died``: ``full`` as a kill during its last checkpoint's save leaves it: no final
    checkpoint, no results, and ``newest``'s file ``cut`` truncated to half its length."""
    shutil.copytree(full, died)
    shutil.rmtree(died / "checkpoints" / "final")
    (died / "eval.json").unlink()
    path = died / "checkpoints" / newest / cut
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_crafted_loop_state_is_refused_on_resume_and_runs_nothing(
    smoke_task_dir, tmp_path, capsys
):
    run, marker = tmp_path / "run", tmp_path / "ran"
    step = run / "checkpoints" / "step_2"
    shutil.copytree(smoke_task_dir / "pi_init", step)  # a well-formed policy folder
    torch.save({"state": {"step": 2}, "rng": _Payload(str(marker))}, step / "loop_state.pt")
    raw = _rloo_raw(smoke_task_dir, run, resume_from_checkpoint=True)
    assert _cli(tmp_path, "rloo", raw) == 2
    assert "refused to load" in _one_error_line(capsys)
    assert not marker.exists()
    assert not (run / "config.yaml").exists()  # a refused run records nothing


def test_resume_from_a_folder_that_is_not_a_checkpoint_is_refused(smoke_task_dir, tmp_path, capsys):
    pi_init = str(smoke_task_dir / "pi_init")
    raw = raw_config(smoke_task_dir, tmp_path / "sft", "sft", resume_from_checkpoint=pi_init)
    assert _cli(tmp_path, "sft", raw) == 2
    assert "not a complete Trainer checkpoint (no trainer_state.json)" in _one_error_line(capsys)
    raw = _rloo_raw(smoke_task_dir, tmp_path / "rloo", resume_from_checkpoint=pi_init)
    assert _cli(tmp_path, "rloo", raw) == 2
    assert "not a complete loop checkpoint (no loop_state.pt)" in _one_error_line(capsys)


def test_sft_resume_falls_back_past_a_checkpoint_cut_short(smoke_task_dir, tmp_path, capsys):
    def raw(out, **training):
        return raw_config(smoke_task_dir, out, "sft", max_steps=2, save_steps=1, **training)

    full, died = tmp_path / "full", tmp_path / "died"
    train(resolve("sft", raw(full)))
    _died_while_saving(full, died, "checkpoint-2", "model.safetensors")
    train(resolve("sft", raw(died, resume_from_checkpoint=True)))
    assert "skipping incomplete checkpoint" in capsys.readouterr().err
    a = load_file(str(full / "checkpoints" / "final" / "model.safetensors"))
    b = load_file(str(died / "checkpoints" / "final" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Each step is logged once, as in the uninterrupted run (step 0: the data counts).
    assert _steps_and_keys(died) == _steps_and_keys(full)


def test_rloo_resume_falls_back_past_a_checkpoint_cut_short(smoke_task_dir, tmp_path, capsys):
    full, died = tmp_path / "full", tmp_path / "died"
    train(resolve("rloo", _rloo_raw(smoke_task_dir, full)))
    _died_while_saving(full, died, "step_2", "loop_state.pt")
    train(resolve("rloo", _rloo_raw(smoke_task_dir, died, resume_from_checkpoint=True)))
    assert "skipping incomplete checkpoint" in capsys.readouterr().err
    a = load_file(str(full / "checkpoints" / "final" / "model.safetensors"))
    b = load_file(str(died / "checkpoints" / "final" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert [r["step"] for r in _lines(died)] == [1, 2]


def test_a_finished_folder_is_refused_untouched_unless_overwritten(
    smoke_task_dir, tmp_path, capsys
):
    out = tmp_path / "sft"
    raw = raw_config(smoke_task_dir, out, "sft", max_steps=2, save_steps=2)
    assert _cli(tmp_path, "sft", raw) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert _cli(tmp_path, "sft", raw) == 2
    assert "holds a finished run (eval.json)" in _one_error_line(capsys)
    assert _snapshot(out) == before
    raw["training"]["learning_rate"] = 1e-3  # another configuration, same folder
    assert _cli(tmp_path, "sft", raw) == 2
    assert "different configuration" in _one_error_line(capsys)
    assert _cli(tmp_path, "sft", raw, "--training.overwrite_output_dir", "true") == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["training"]["learning_rate"] == 1e-3
    assert [r["step"] for r in _lines(out)] == [0, 1, 2, 2]  # one run's lines, not two
    assert not (out / LOCK).exists()


def test_a_held_lock_refuses_a_second_run(smoke_task_dir, tmp_path, capsys):
    out = tmp_path / "sft"
    out.mkdir()
    (out / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    assert _cli(tmp_path, "sft", raw_config(smoke_task_dir, out, "sft")) == 2
    assert "is writing to this folder" in _one_error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == [LOCK]


def test_nothing_is_recorded_before_the_data_passes_validation(smoke_task_dir, tmp_path, capsys):
    out = tmp_path / "sft"
    raw = raw_config(smoke_task_dir, out, "sft")
    raw["data"]["train"] = str(tmp_path / "missing.jsonl")
    assert _cli(tmp_path, "sft", raw) == 2
    _one_error_line(capsys)
    assert not out.exists()


def test_overwrite_output_dir_is_a_loop_training_key(smoke_task_dir, tmp_path):
    """(Trainer methods take it too: the refused-folder test overwrites an SFT run.)"""
    raw = _rloo_raw(smoke_task_dir, tmp_path / "run", overwrite_output_dir=True)
    assert resolve("rloo", raw).training["overwrite_output_dir"] is True
    raw["training"]["overwrite_output_dir"] = "yes"
    assert _cli(tmp_path, "rloo", raw) == 2
