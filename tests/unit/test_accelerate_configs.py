"""The shipped accelerate configs load with accelerate's own loader and name only options its
launcher knows; tracker files go into the run folder for the `Trainer` methods and the loops
(checked through the configured directories: tensorboard need not be installed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from irlalign.trackers import loop_trackers, reported, tracker_dir, trainer_trackers

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"
SHIPPED = {
    "ddp.yaml": "MULTI_GPU",
    "fsdp.yaml": "FSDP",
    "deepspeed_zero2.yaml": "DEEPSPEED",
    "cpu_2proc.yaml": "MULTI_GPU",  # started by torchrun, each process on the CPU
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_accelerate_config_loads(name):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    config = load_config_from_file(str(CONFIGS / name))  # unknown top-level keys raise
    assert config.distributed_type.value == SHIPPED[name]
    assert config.num_processes == 2 and config.num_machines == 1
    assert config.use_cpu == (name == "cpu_2proc.yaml")
    # The launcher copies each nested key onto its option of the same name; a typo would be
    # dropped silently, so every key must be one of its options.
    options = {action.dest for action in launch_command_parser()._actions}
    nested = {**config.deepspeed_config, **config.fsdp_config}
    assert not sorted(set(nested) - options)


def test_trainer_trackers_write_into_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    monkeypatch.setenv("WANDB_DIR", "/somewhere/else")  # set by the user: kept
    with trainer_trackers(tmp_path / "run"):
        assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "run" / "tb")
        assert os.environ["WANDB_DIR"] == "/somewhere/else"
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ  # restored after the run


def test_loop_trackers_write_into_the_run_folder(tmp_path):
    log_with, init_kwargs = loop_trackers(["tensorboard", "wandb"], tmp_path)
    tensorboard = log_with[0]
    # accelerate's TensorBoard tracker writes to <logging_dir>/<run name> when it starts.
    assert Path(tensorboard.logging_dir_param) / tensorboard.run_name == tracker_dir(tmp_path)
    assert tracker_dir(tmp_path) == tmp_path / "tb"
    assert log_with[1] == "wandb" and init_kwargs == {"wandb": {"dir": str(tmp_path)}}
    assert loop_trackers("none", tmp_path) == ([], {})
    assert reported("tensorboard") == ["tensorboard"] and reported(None) == []
