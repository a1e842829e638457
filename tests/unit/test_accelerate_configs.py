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
    "deepspeed_zero3.yaml": "DEEPSPEED",
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


def _launched_env(name: str) -> dict[str, str]:
    """The environment `accelerate launch --config_file <name>` gives the processes it starts
    (accelerate's own launcher steps, without starting anything)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    parsed = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), "x.py"])
    args, defaults, _ = _validate_launch_command(parsed)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        env = prepare_deepspeed_cmd_env(args)[1]
    else:
        env = prepare_multi_gpu_env(args)
    return {k: v for k, v in env.items() if k.startswith(("ACCELERATE_", "FSDP_"))}


@pytest.fixture
def launched(monkeypatch):
    """Sets, for one test, the environment a shipped config gives its processes."""
    for key in [k for k in os.environ if k.startswith(("ACCELERATE_", "FSDP_"))]:
        monkeypatch.delenv(key)

    def apply(name: str) -> None:
        for key, value in _launched_env(name).items():
            monkeypatch.setenv(key, value)

    return apply


def test_zero3_saves_gathered_16bit_weights(launched):
    """ZeRO-3 shards the weights: without gathering them on save, `checkpoints/final` would not
    be a `save_pretrained` folder. The DeepSpeed plugin is built without deepspeed installed."""
    from accelerate.utils import DeepSpeedPlugin

    launched("deepspeed_zero3.yaml")
    plugin = DeepSpeedPlugin()
    zero = plugin.deepspeed_config["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert plugin.zero3_init_flag is True
    launched("deepspeed_zero2.yaml")
    assert DeepSpeedPlugin().deepspeed_config["zero_optimization"]["stage"] == 2


def test_fsdp_config_yields_a_full_state_dict_fsdp2_plugin(launched):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import StateDictType

    launched("fsdp.yaml")
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT  # one save_pretrained folder
    assert plugin.state_dict_config.rank0_only and plugin.cpu_ram_efficient_loading
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"


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
