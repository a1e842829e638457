"""Training through the Python API on rows given in memory, and `irlalign train` without a
preset: two steps each on the smoke task's tiny model."""

from __future__ import annotations

import json

import pytest
import yaml
from datasets import load_from_disk

import irlalign
from irlalign.cli.main import main

TRAINING = {
    "max_steps": 2,
    "per_device_train_batch_size": 4,
    "logging_steps": 1,
    "use_cpu": True,
    "disable_tqdm": True,
}


@pytest.fixture
def demos(smoke_task_dir):
    return load_from_disk(str(smoke_task_dir / "demos"))["train"].select(range(8))


@pytest.mark.parametrize("as_list", [True, False], ids=["list_of_dicts", "dataset"])
def test_one_call_trains_on_rows_given_in_memory(
    as_list, demos, smoke_task_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("IRLALIGN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    results = irlalign.train(
        "iqlearn",
        model=smoke_task_dir / "pi_init",
        data=demos.to_list() if as_list else demos,
        output_dir=out,
        method={"lam": 0.1},
        training=TRAINING,
        **{"data.max_length": 32},
    )
    assert (out / "checkpoints" / "final" / "config.json").is_file()
    assert results["data"]["data/rows"] == 8
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["train"].startswith(str(tmp_path / "cache" / "datasets"))
    assert saved["method"]["lam"] == 0.1
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(s["step"] for s in steps) == 2 and any("loss/td" in s for s in steps)


def test_command_line_trains_without_a_preset(smoke_task_dir, tmp_path):
    out = tmp_path / "sft"
    argv = [
        "train",
        "sft",
        "--model_name_or_path",
        str(smoke_task_dir / "pi_init"),
        "--dataset_name",
        str(smoke_task_dir / "demos"),
        "--output_dir",
        str(out),
        "--data.max_length",
        "32",
        "--data.max_rows",
        "8",
    ]
    argv += [f"--training.{key}={value}" for key, value in TRAINING.items()]
    assert main(argv) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["path"] == str(smoke_task_dir / "pi_init")
    assert saved["training"]["max_steps"] == 2 and saved["training"]["use_cpu"] is True
    assert (out / "checkpoints" / "final" / "config.json").is_file()


def test_notebook_session_demonstrations_to_rewards_to_rl(smoke_task_dir, tmp_path, monkeypatch):
    """What a notebook does: IQLearn on a `Dataset` built in memory, its per-token rewards, a
    Bradley–Terry reward model on preference rows, then two RLOO steps against that model."""
    monkeypatch.setenv("IRLALIGN_CACHE", str(tmp_path / "cache"))
    from datasets import Dataset

    from irlalign.modeling.reward import load_reward_model

    task = load_from_disk(str(smoke_task_dir / "demos"))["train"].select(range(8))
    demos = Dataset.from_dict({"prompt": task["prompt"], "completion": task["completion"]})
    base = smoke_task_dir / "pi_init"
    iq = irlalign.train(
        "iqlearn",
        model=base,
        data=demos,
        output_dir=tmp_path / "iq",
        method={"lam": 0.1},
        training=TRAINING,
        **{"data.max_length": 32},
    )
    out = tmp_path / "rewards.jsonl"
    argv = ["rewards", "--model", iq["final_checkpoint"], "--data", str(smoke_task_dir / "demos")]
    assert main([*argv, "--out", str(out), "--max-rows", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and len(rows[0]["rewards"]) == len(rows[0]["tokens"])

    prefs = load_from_disk(str(smoke_task_dir / "preferences"))["train"].select(range(8))
    pairs = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in prefs]
    rm = irlalign.train(
        "reward",
        model=base,
        data=pairs,
        output_dir=tmp_path / "rm",
        training=TRAINING,
        **{"data.max_length": 32},
    )
    scores = load_reward_model(rm["final_checkpoint"]).score(
        [pairs[0]["prompt"]], [pairs[0]["chosen"]]
    )
    assert len(scores) == 1

    rl = irlalign.train(
        "rloo",
        model=base,
        data=demos,
        output_dir=tmp_path / "rloo",
        method={
            "reward_model": rm["final_checkpoint"],
            "k": 2,
            "prompts_per_step": 2,
            "sampling": {"max_new_tokens": 8},
        },
        training={"max_steps": 2, "logging_steps": 1, "disable_tqdm": True},
    )
    logged = [
        json.loads(line) for line in (tmp_path / "rloo" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in logged if "rl/reward" in r] == [1, 2]
    assert (tmp_path / "rloo" / "checkpoints" / "final" / "config.json").is_file()
    assert rl["final_checkpoint"].endswith("final")
