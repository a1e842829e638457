"""The run folder's protection without training anything: the lock (held, stale, another host),
which folders a run may write, what `overwrite_output_dir` may clear, checkpoint completeness
checks, atomic checkpoint folders and the pipeline phase log."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from irlalign.integrity import (
    loop_checkpoint_problem,
    safetensors_problem,
    torch_file_problem,
    trainer_checkpoint_problem,
)
from irlalign.loops.checkpoint import atomic_folder
from irlalign.runs import LOCK, PhaseLog, RunLock, claimed, occupant

CONFIG = {"method_name": "sft", "training": {"output_dir": "x", "max_steps": 3}}


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(folder, pid, host=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname()}))


def test_a_held_lock_refuses_a_second_writer(tmp_path):
    _write_lock(tmp_path, os.getpid())  # a live process holds it
    with pytest.raises(ValueError, match="another run .* is writing to this folder"):
        RunLock(tmp_path).acquire()


def test_a_lock_from_another_host_is_respected(tmp_path):
    _write_lock(tmp_path, _dead_pid(), host="elsewhere.invalid")
    with pytest.raises(ValueError, match="elsewhere.invalid"):
        RunLock(tmp_path).acquire()


def test_a_stale_lock_is_taken_over_and_released(tmp_path, capsys):
    _write_lock(tmp_path, _dead_pid())
    with claimed(tmp_path, CONFIG):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert "stale lock" in capsys.readouterr().err
    assert not (tmp_path / LOCK).exists()


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(RuntimeError), claimed(tmp_path / "run", CONFIG):
        raise RuntimeError("training failed")
    assert not (tmp_path / "run").exists()  # it created the folder and wrote nothing


def test_which_folders_hold_another_run(tmp_path):
    (tmp_path / "config.yaml").write_text("method_name: sft\ntraining: {output_dir: x}\n")
    assert "different configuration" in occupant(tmp_path, CONFIG)
    assert "different configuration" in occupant(tmp_path, CONFIG, pipeline=True)
    # The same run, asked to start in another way, is not another run.
    same = {**CONFIG, "training": {**CONFIG["training"], "resume_from_checkpoint": True}}
    (tmp_path / "config.yaml").write_text(json.dumps(same))
    assert occupant(tmp_path, CONFIG) is None
    (tmp_path / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    assert "started run" in occupant(tmp_path, CONFIG)
    (tmp_path / "eval.json").write_text("{}")
    assert "finished run" in occupant(tmp_path, CONFIG)
    assert occupant(tmp_path, CONFIG, pipeline=True) is None  # reruns resume at boundaries
    (tmp_path / "config.yaml").write_text("method_name: [sft")  # cut short by a kill
    assert "cannot be read" in occupant(tmp_path, CONFIG, pipeline=True)


def test_overwrite_clears_only_run_folders(tmp_path):
    overwrite = {**CONFIG, "training": {**CONFIG["training"], "overwrite_output_dir": True}}
    run = tmp_path / "run"
    (run / "checkpoints" / "final").mkdir(parents=True)
    (run / "eval.json").write_text("{}")
    with claimed(run, overwrite):
        assert sorted(p.name for p in run.iterdir()) == [LOCK]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.tex").write_text("months of work")
    with pytest.raises(ValueError, match="holds no run"), claimed(other, overwrite):
        pass
    assert (other / "thesis.tex").exists()


def test_resume_and_overwrite_together_are_refused(tmp_path):
    both = {"training": {"resume_from_checkpoint": True, "overwrite_output_dir": True}}
    with pytest.raises(ValueError, match="exclude each other"), claimed(tmp_path, both):
        pass


def test_truncated_files_are_detected(tmp_path):
    save_file({"w": torch.ones(64)}, tmp_path / "model.safetensors")
    torch.save({"a": torch.ones(64)}, tmp_path / "state.pt")
    assert safetensors_problem(tmp_path / "model.safetensors") is None
    assert torch_file_problem(tmp_path / "state.pt") is None
    for name in ("model.safetensors", "state.pt"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    assert "bytes" in safetensors_problem(tmp_path / "model.safetensors")
    assert "truncated" in torch_file_problem(tmp_path / "state.pt")


def test_checkpoint_folders_of_each_kind(tmp_path):
    ckpt = tmp_path / "checkpoint-2"
    ckpt.mkdir()
    assert trainer_checkpoint_problem(ckpt) == "no trainer_state.json"
    save_file({"w": torch.ones(4)}, ckpt / "model.safetensors")
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    assert trainer_checkpoint_problem(ckpt) is None
    (ckpt / "trainer_state.json").write_text('{"global_st')  # cut short by a kill
    assert "not valid JSON" in trainer_checkpoint_problem(ckpt)
    assert loop_checkpoint_problem(ckpt) == "no loop_state.pt"


def test_an_interrupted_atomic_save_leaves_the_old_folder(tmp_path):
    target = tmp_path / "step_2"
    with atomic_folder(target) as tmp:
        (tmp / "a").write_text("first")
    with pytest.raises(KeyboardInterrupt), atomic_folder(target) as tmp:
        (tmp / "a").write_text("second, never finished")
        raise KeyboardInterrupt
    assert (target / "a").read_text() == "first"
    with atomic_folder(target) as tmp:  # the next save replaces it and the stray
        (tmp / "a").write_text("third")
    assert (target / "a").read_text() == "third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_2"]


def test_a_phase_is_reused_only_with_its_key_and_untouched_outputs(tmp_path):
    log, out = PhaseLog(tmp_path), tmp_path / "samples.jsonl"
    key = {"seed": 0, "sampling": (1.0, 12)}
    assert log.reusable("samples", key, [out]) is None
    log.start("samples", key)
    assert log.started("samples", key) and log.reusable("samples", key, [out]) is None
    out.write_text("rows\n")
    log.finish("samples", key, {"n": 1}, outputs=[out])
    assert log.reusable("samples", key, [out])["result"] == {"n": 1}
    assert log.reusable("samples", {**key, "seed": 1}, [out]) is None
    out.write_text("other rows\n")
    assert log.reusable("samples", key, [out]) is None
