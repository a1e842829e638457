"""RLOO and PPO loops on the tiny model: a frozen reward model, the policy changes, metrics are
written, and a run resumed from its checkpoint ends exactly where an uninterrupted one does."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from irlalign.methods import resolve, train


@pytest.fixture(scope="module")
def frozen_rm(smoke_task_dir, tmp_path_factory) -> Path:
    """A one-logit sequence classifier on π_init's backbone (random head): any fixed RM will do."""
    from irlalign.modeling.load import ModelOptions, load_model, load_tokenizer

    torch.manual_seed(0)
    path = str(smoke_task_dir / "pi_init")
    out = tmp_path_factory.mktemp("frozen_rm")
    load_model(ModelOptions(path=path), kind="reward").save_pretrained(out)
    load_tokenizer(path).save_pretrained(out)
    return out


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def _raw(task: Path, out: Path, method: str, reward_model: str, **method_kw):
    return {
        "model": {"path": str(task / "pi_init")},
        "data": {"train": str(task / "demos")},
        "method": {
            "reward_model": reward_model,
            "prompts_per_step": 4,
            "sampling": {"max_new_tokens": 12},
            **method_kw,
        },
        "training": {
            "output_dir": str(out),
            "max_steps": 3,
            "learning_rate": 1e-2,
            "save_steps": 2,
            "seed": 0,
            "use_cpu": True,
            "disable_tqdm": True,
        },
        "eval": {"synthetic_task": str(task), "samples": 1},
    }


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


VARIANTS = {
    "rloo": {"k": 2},
    # Each batch of samples reused for 2 passes × 2 minibatches (the clipped loss).
    "rloo_reuse": {"k": 2, "num_iterations": 2, "num_minibatches": 2},
    # The exact per-state KL as a loss term (needs per-token advantages).
    "rloo_exact": {"k": 2, "advantage": "reward_to_go", "kl_estimator": "exact"},
    "ppo": {"ppo_epochs": 2},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_loop_trains_the_policy_against_a_frozen_reward_model(
    variant, smoke_task_dir, frozen_rm, tmp_path
):
    before = _digest(frozen_rm)
    method, kw = variant.split("_")[0], VARIANTS[variant]
    cfg = resolve(method, _raw(smoke_task_dir, tmp_path / "run", method, str(frozen_rm), **kw))
    results = train(cfg)
    assert _digest(frozen_rm) == before  # the reward model is never written
    final = Path(results["final_checkpoint"])
    init = _weights(smoke_task_dir / "pi_init")
    trained = _weights(final)
    assert all(not torch.equal(init[k], trained[k]) for k in init)  # every weight was trained
    rows = _metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[0]["policy/kl"] == pytest.approx(0.0, abs=1e-5)  # π = π_ref before any update
    for key in ("rl/reward", "loss/total", "rl/length"):
        assert all(key in r for r in rows)
    if method == "rloo":  # the clipped loss only when samples are reused
        assert all(("rl/clip_frac" in r) == (variant == "rloo_reuse") for r in rows)
    assert all(("policy/kl_exact" in r) == (variant == "rloo_exact") for r in rows)
    if variant == "rloo_exact":  # the exact KL and the sampled one agree at π = π_ref
        assert rows[0]["policy/kl_exact"] == pytest.approx(0.0, abs=1e-5)
    syn = results["synthetic"]
    assert "normalised_score" in syn
    # The objective's accounting: J(π₀) measured before training, J* exact, and the gap closed.
    start, optimum = syn["objective_start"], syn["optimal_objective"]
    assert optimum > start
    expected = (syn["objective"] - start) / (optimum - start)
    assert syn["gap_closed"] == pytest.approx(expected)
    assert (tmp_path / "run" / "checkpoints" / "step_2" / "loop_state.pt").exists()
    if method == "ppo":
        assert "value" in json.loads((final / "irl_heads.json").read_text())


def test_reference_is_frozen_and_outside_the_optimizer(smoke_task_dir, frozen_rm, tmp_path):
    from irlalign.loops.setup import setup

    cfg = resolve("rloo", _raw(smoke_task_dir, tmp_path / "run", "rloo", str(frozen_rm), k=2))
    o = setup(cfg)
    optimised = {id(p) for g in o.optimizer.param_groups for p in g["params"]}
    assert not any(p.requires_grad or id(p) in optimised for p in o.ref.parameters())
    assert not o.ref.training


def test_resumed_run_matches_an_uninterrupted_one(smoke_task_dir, tmp_path):
    full = tmp_path / "full"
    train(resolve("rloo", _raw(smoke_task_dir, full, "rloo", "gold", k=2)))
    # A run that "died" after step 2: only its step-2 checkpoint and logs up to step 2 survive.
    resumed = tmp_path / "resumed"
    shutil.copytree(full / "checkpoints" / "step_2", resumed / "checkpoints" / "step_2")
    shutil.copy(full / "metrics.jsonl", resumed / "metrics.jsonl")
    raw = _raw(smoke_task_dir, resumed, "rloo", "gold", k=2)
    raw["training"]["resume_from_checkpoint"] = True
    train(resolve("rloo", raw))
    a, b = _weights(full / "checkpoints" / "final"), _weights(resumed / "checkpoints" / "final")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    steps = [r["step"] for r in _metrics(resumed) if "rl/reward" in r]
    assert steps == [1, 2, 3]  # the step after the checkpoint is logged once


def test_unknown_training_key_is_an_error_before_loading(smoke_task_dir, tmp_path):
    raw = _raw(smoke_task_dir, tmp_path / "run", "rloo", "gold", k=2)
    raw["training"]["per_device_train_batch_size"] = 8
    with pytest.raises(ValueError, match="per_device_train_batch_size"):
        resolve("rloo", raw)


def test_lora_policy_saves_adapter_and_merged_model_and_resumes(smoke_task_dir, tmp_path):
    raw = _raw(smoke_task_dir, tmp_path / "run", "rloo", "gold", k=2)
    raw["model"]["lora"] = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    results = train(resolve("rloo", raw))
    final = Path(results["final_checkpoint"])
    assert (final / "adapter_config.json").exists()
    merged = Path(results["merged_checkpoint"])
    base, tuned = _weights(smoke_task_dir / "pi_init"), _weights(merged)
    assert set(base) == set(tuned) and any(not torch.equal(base[k], tuned[k]) for k in base)
    raw["training"].update(resume_from_checkpoint=True, max_steps=4)
    assert train(resolve("rloo", raw))["steps"] == 4
