"""`irlalign train demo_rl` end to end on the tiny model (2 steps per phase): SFT → a dense reward
from the demonstrations (each of the three kinds) → RLOO from π_SFT; resume at phase boundaries;
config errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from irlalign.methods import resolve, train

STEPS = {"max_steps": 2, "per_device_train_batch_size": 8, "learning_rate": 1e-2}


def _raw(task: Path, out: Path, method: dict, synthetic: bool = True) -> dict:
    return {
        "model": {"path": str(task / "pi_init")},
        "data": {"train": str(task / "demos"), "max_length": 32, "max_rows": 16},
        "method": {
            "turn_markers": [],
            "sampling": {"max_new_tokens": 12},
            "sft_training": STEPS,
            "reward_training": STEPS,
            "heldout_fraction": 0.25,
            "rl_method": {"k": 2, "prompts_per_step": 2},
            "rl_training": {"max_steps": 2, "save_steps": 5},
            **method,
        },
        "training": {"output_dir": str(out), "seed": 0, "use_cpu": True},
        "eval": {"synthetic_task": str(task), "samples": 1} if synthetic else {},
    }


@pytest.mark.parametrize(
    ("reward", "synthetic"),
    [("implicit", True), ("log_ratio", False)],
    ids=["implicit", "log_ratio"],
)
def test_demo_rl_end_to_end(smoke_task_dir, tmp_path, reward, synthetic):
    run = tmp_path / "demo"
    res = train(resolve("demo_rl", _raw(smoke_task_dir, run, {"reward": reward}, synthetic)))
    sft, init = run / "sft" / "checkpoints" / "final", smoke_task_dir / "pi_init"
    assert res["sft_model"] == str(sft) and (sft / "config.json").exists()
    spec = res["reward_model"]["spec"]
    if reward == "implicit":  # IQLearn trained from π_init, its reward minus π_init's
        assert spec == f"implicit:{run / 'reward' / 'checkpoints' / 'final'},{init}"
        assert (run / "reward" / "checkpoints" / "final" / "config.json").exists()
    else:  # no training: nothing in reward/
        assert spec == f"log_ratio:{sft},{init}" and not (run / "reward").exists()
    rl_config = json.loads(json.dumps(_yaml(run / "rl" / "config.yaml")))
    assert rl_config["method"]["reward_model"] == spec
    assert rl_config["method"]["reward_mode"] == "dense"
    assert rl_config["model"]["path"] == str(sft) and "reference_path" not in rl_config["model"]
    assert res["final_checkpoint"] == str(run / "rl" / "checkpoints" / "final")
    assert (run / "rl" / "checkpoints" / "final" / "config.json").exists()
    assert res["rl"]["steps"] == 2 and res["rl"]["method"] == "rloo"
    assert json.loads((run / "eval.json").read_text())["reward_model"]["spec"] == spec
    if synthetic:
        summary = res["summary"]
        final = res["rl"]["synthetic"]
        assert summary["final"]["normalised_score"] == final["normalised_score"]
        assert summary["final"]["gap_closed"] == final["gap_closed"]
        assert summary["sft"]["normalised_score"] == res["sft_eval"]["normalised_score"]
        # π_SFT is where the RL phase started: its J is the start of gap_closed
        assert summary["sft"]["objective"] == pytest.approx(final["objective_start"])
        assert summary["sft"]["gap_closed"] == pytest.approx(0.0, abs=1e-9)
    else:
        assert "summary" not in res and "synthetic" not in res["rl"]


def _yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def test_demo_rl_resumes_after_the_reward_phase(smoke_task_dir, tmp_path, monkeypatch, capsys):
    """The RL phase fails once (as a kill would stop it); the rerun of the same folder reuses
    π_SFT, its evaluation and the Init-SFT discriminator with its samples, and finishes."""
    import irlalign.loops.rloo as rloo

    real, calls = rloo.train_rloo, []

    def fails_once(cfg):
        calls.append(cfg.run_dir)
        if len(calls) == 1:
            raise RuntimeError("interrupted")
        return real(cfg)

    monkeypatch.setattr(rloo, "train_rloo", fails_once)
    run = tmp_path / "demo"
    raw = _raw(smoke_task_dir, run, {"reward": "init_sft"})
    with pytest.raises(RuntimeError, match="interrupted"):
        train(resolve("demo_rl", raw))
    assert not (run / "eval.json").exists()
    kept = [
        run / "sft" / "checkpoints" / "final" / "model.safetensors",
        run / "reward" / "samples.jsonl",
        run / "reward" / "rm_init_sft" / "model.safetensors",
    ]
    stamps = [os.stat(p).st_mtime_ns for p in kept]
    raw["training"]["resume_from_checkpoint"] = True
    capsys.readouterr()
    res = train(resolve("demo_rl", raw))
    assert [os.stat(p).st_mtime_ns for p in kept] == stamps  # nothing retrained
    assert f"{run / 'sft'}: finished before" in capsys.readouterr().out
    assert calls == [run / "rl", run / "rl"] and res["rl"]["steps"] == 2
    assert res["reward_model"]["spec"] == str(run / "reward" / "rm_init_sft")
    assert 0 <= res["reward_model"]["heldout_accuracy"] <= 1
    assert (run / "rl" / "checkpoints" / "final" / "config.json").exists()
    assert set(res["summary"]) == {"sft", "final"}


@pytest.mark.parametrize(
    ("method", "key"),
    [
        ({"reward": "bradley_terry"}, "method.reward"),
        ({"rl": "dpo"}, "method.rl"),
        ({"iqlearn_from": "ref"}, "method.iqlearn_from"),
        ({"rl_method": {"reward_model": "gold"}}, "method.rl_method.reward_model"),
        ({"rl_method": {"k": 1}}, "method.rl_method"),
        ({"rl": "ppo", "rl_method": {"advantage": "reward_to_go"}}, "method.rl_method"),
        ({"reward_method": {"lamda": 0.1}}, "method.reward_method"),
    ],
)
def test_demo_rl_config_errors_name_the_key(tmp_path, method, key):
    with pytest.raises(ValueError) as err:
        resolve("demo_rl", _raw(tmp_path, tmp_path / "run", method))
    assert str(err.value).startswith(key) or f"'{key}'" in str(err.value)
    assert "\n" not in str(err.value)


def test_rl_phase_inputs_include_both_folders_of_a_paired_reward(tmp_path):
    """A retrained IQLearn or SFT model behind an `implicit:`/`log_ratio:` reward makes the RL
    phase's inputs differ, so a rerun does not reuse RL trained against the old reward."""
    from irlalign.methods import input_fingerprints

    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    raw = {
        "model": {"path": str(a)},
        "data": {"train": str(a)},
        "method": {"reward_model": f"log_ratio:{a},{b}"},
        "training": {"output_dir": str(tmp_path / "rl")},
    }
    before = input_fingerprints(resolve("rloo", raw))
    assert len(before["reward_model"]) == 2
    (b / "config.json").write_text('{"retrained": true}')
    assert input_fingerprints(resolve("rloo", raw))["reward_model"] != before["reward_model"]
