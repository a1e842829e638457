"""`child_config`, the one builder of a pipeline phase's config: what a phase inherits from its
parent run and what it never does."""

from __future__ import annotations

import dataclasses

import pytest

from irlalign.config import EvalOptions
from irlalign.methods import child_config, resolve


@pytest.fixture
def parent(tmp_path):
    return resolve(
        "afd",
        {
            "model": {
                "path": "models/pi_init",
                "dtype": "bfloat16",
                "trust_remote_code": True,
                "lora": {"r": 4},
                "extra": {"attn_implementation": "eager"},
            },
            "data": {
                "train": "demos.jsonl",
                "split": "validation",
                "max_rows": 300,
                "eval": "held.jsonl",
                "max_length": 64,
                "max_prompt_length": 32,
                "truncation": "drop",
                "append_eos": False,
            },
            "training": {"output_dir": str(tmp_path / "afd"), "seed": 7, "use_cpu": True},
            "eval": {"synthetic_task": "task", "samples": 2, "seed": 5},
        },
    )


def test_a_phase_inherits_model_options_tokenisation_seed_and_device(parent, tmp_path):
    child = child_config(
        "reward",
        parent,
        folder="rm_bt",
        model="models/sft",
        data={"train": "prefs.jsonl"},
        training={"max_steps": 5},
    )
    assert child.method_name == "reward"
    assert child.model == dataclasses.replace(parent.model, path="models/sft")
    assert child.training == {
        "seed": 7,
        "use_cpu": True,
        "max_steps": 5,
        "output_dir": str(tmp_path / "afd" / "rm_bt"),
    }
    for name in ("max_length", "max_prompt_length", "truncation", "append_eos"):
        assert getattr(child.data, name) == getattr(parent.data, name), name


def test_a_phase_never_inherits_the_parents_rows(parent):
    child = child_config("reward", parent, folder="rm_bt", model="m", data={"train": "prefs.jsonl"})
    assert child.data.train == "prefs.jsonl"
    assert child.data.max_rows is None  # a preference set is not cut to the demonstrations' size
    assert child.data.split == "train" and child.data.eval is None
    assert child.eval == EvalOptions()  # no synthetic evaluation unless asked for
    assert child.reference is None


def test_an_rl_phase_gets_its_reference_and_the_parents_evaluation(parent):
    rows = {"train": parent.data.train, "split": parent.data.split, "max_rows": 300}
    child = child_config(
        "rloo",
        parent,
        folder="rl",
        model="models/policy_k",
        data=rows,
        method={"reward_model": "rm"},
        reference="models/sft",
        evaluate=True,
    )
    assert child.eval == parent.eval
    assert child.reference.path == "models/sft" and child.reference.lora is None
    # config.yaml records the reference, so the written config resolves to the same run
    written = child.to_dict()
    assert written["model"]["reference_path"] == "models/sft"
    assert resolve("rloo", written).to_dict() == written
    assert child.reference.dtype == parent.model.dtype
    assert (child.data.split, child.data.max_rows) == ("validation", 300)  # passed explicitly
    assert child.method_config.reward_model == "rm"


def test_a_phase_may_set_its_own_seed_but_not_its_folder(parent, tmp_path):
    child = child_config(
        "sft",
        parent,
        folder="sft",
        model="m",
        data={"train": "d.jsonl"},
        training={"seed": 11, "output_dir": "elsewhere"},
    )
    assert child.seed == 11
    assert child.run_dir == tmp_path / "afd" / "sft"


def test_a_bad_phase_key_is_an_error_naming_the_section(parent):
    with pytest.raises(ValueError, match="section 'method'"):
        child_config("sft", parent, folder="s", model="m", data={"train": "d"}, method={"x": 1})


def test_a_phase_run_is_reused_continued_or_redone(parent, tmp_path, monkeypatch):
    """A rerun reuses a phase that finished from the same config and inputs, continues one that
    was interrupted, and redoes one whose input was rewritten (a refit reward model)."""
    import irlalign.methods as methods

    calls = []

    def fake_train(cfg):
        calls.append(cfg.training.get("resume_from_checkpoint"))
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed mid-phase
        (cfg.run_dir / "checkpoints" / "final").mkdir(parents=True, exist_ok=True)
        (cfg.run_dir / "eval.json").write_text('{"final_checkpoint": "final"}')
        return {"final_checkpoint": "final"}

    monkeypatch.setattr(methods, "train", fake_train)
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "model.safetensors").write_text("v1")
    phase = {"folder": "rl", "model": "models/pi_init", "data": {"train": "demos.jsonl"}}
    run = lambda: methods.run_child("rloo", parent, method={"reward_model": str(rm)}, **phase)  # noqa: E731
    run()
    assert run() == {"final_checkpoint": "final"} and calls == [None]  # reused, not run
    (rm / "model.safetensors").write_text("v2, refit upstream")
    (parent.run_dir / "rl" / "metrics.jsonl").write_text('{"step": 1}\n')
    run()
    assert calls == [None, None]  # redone from scratch, its old records removed first
    assert not (parent.run_dir / "rl" / "metrics.jsonl").exists()
    (rm / "model.safetensors").write_text("v3, refit again")
    with pytest.raises(KeyboardInterrupt):
        run()
    run()
    assert calls == [None, None, None, True]  # the interrupted phase continues
