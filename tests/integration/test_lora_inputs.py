"""LoRA adapter folders (and run folders whose `checkpoints/final` is one) as the inputs of RL:
a sequence-classification adapter as `reward_model`, a causal-LM adapter inside `log_ratio:` /
`implicit:`, as `model.path` and as `model.reference_path`. Adapters are built in-process with
random LoRA weights, so that merging them changes every score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from irlalign.config import LoraOptions, ModelOptions
from irlalign.methods import resolve, train
from irlalign.modeling.load import load_model, load_tokenizer
from irlalign.modeling.reward import is_reward_model_folder
from irlalign.modeling.reward_specs import load_reward_spec

LORA = LoraOptions(r=4, alpha=8, target_modules=["q_proj", "v_proj"])


def _save_adapter(base: Path, kind: str, run: Path) -> tuple[Path, Path]:
    """A LoRA adapter of ``kind`` on ``base`` with non-zero weights, saved as the run folder
    ``run``'s `checkpoints/final`; and the same model merged, as a plain folder."""
    torch.manual_seed(0)
    model = load_model(ModelOptions(str(base), lora=LORA), kind)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "score" in name:  # lora_B starts at zero: no change
                p.copy_(0.5 * torch.randn_like(p))
    tok = load_tokenizer(str(base))
    final, merged = run / "checkpoints" / "final", run / "merged"
    model.save_pretrained(final)
    tok.save_pretrained(final)
    model.merge_and_unload().save_pretrained(merged)
    tok.save_pretrained(merged)
    return final, merged


@pytest.fixture(scope="module")
def adapters(smoke_task_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    base = smoke_task_dir / "pi_init"
    rm_final, rm_merged = _save_adapter(base, "reward", root / "rm_run")
    lm_final, lm_merged = _save_adapter(base, "causal_lm", root / "lm_run")
    return {
        "rm": rm_final, "rm_merged": rm_merged, "rm_run": root / "rm_run",
        "lm": lm_final, "lm_merged": lm_merged, "lm_run": root / "lm_run",
    }  # fmt: skip


def _rows(task: Path, n: int = 4) -> tuple[list[str], list[str]]:
    from datasets import load_from_disk

    rows = load_from_disk(str(task / "preferences"))["train"].select(range(n))
    return list(rows["prompt"]), list(rows["chosen"])


@pytest.mark.parametrize(
    ("adapter", "merged"),
    [
        ("{rm}", "{rm_merged}"),
        ("{rm_run}", "{rm_merged}"),
        ("implicit:{lm},{base}", "implicit:{lm_merged},{base}"),
        ("log_ratio:{lm_run},{base}", "log_ratio:{lm_merged},{base}"),
    ],
)
def test_adapter_reward_equals_the_merged_models(adapter, merged, adapters, smoke_task_dir):
    names = {**adapters, "base": smoke_task_dir / "pi_init"}
    prompts, responses = _rows(smoke_task_dir)
    a = load_reward_spec(adapter.format(**names))
    b = load_reward_spec(merged.format(**names))
    scores = a.score(prompts, responses)
    np.testing.assert_allclose(scores, b.score(prompts, responses), atol=1e-4, rtol=0)
    pairs = zip(
        a.token_rewards(prompts, responses), b.token_rewards(prompts, responses), strict=True
    )
    for x, y in pairs:
        assert x.token_ids == y.token_ids
        np.testing.assert_allclose(x.rewards, y.rewards, atol=1e-4, rtol=0)


def test_reward_adapter_is_not_the_base_model(adapters, smoke_task_dir):
    """The adapter's weights and score layer are applied: its scores differ from the same
    architecture's freshly loaded base (which the equality above alone would not rule out)."""
    prompts, responses = _rows(smoke_task_dir)
    assert is_reward_model_folder(adapters["rm"]) and is_reward_model_folder(adapters["rm_run"])
    assert not is_reward_model_folder(adapters["lm"])
    with pytest.raises(ValueError, match="causal-LM LoRA adapter with no reward head"):
        load_reward_spec(str(adapters["lm"]))
    scores = load_reward_spec(str(adapters["rm"])).score(prompts, responses)
    torch.manual_seed(1)
    fresh = load_model(ModelOptions(str(smoke_task_dir / "pi_init")), "reward")
    from irlalign.modeling.reward import SequenceClassifierReward

    tok = load_tokenizer(str(smoke_task_dir / "pi_init"))
    tok.padding_side = "right"
    other = SequenceClassifierReward(fresh, tok).score(prompts, responses)
    assert np.abs(scores - other).max() > 1e-2


def _rl_config(task: Path, out: Path, model: Path, reference: Path, reward: str) -> dict:
    return {
        "model": {"path": str(model), "reference_path": str(reference)},
        "data": {"train": str(task / "demos")},
        "method": {
            "reward_model": reward,
            "k": 2,
            "prompts_per_step": 2,
            "sampling": {"max_new_tokens": 8},
        },
        "training": {
            "output_dir": str(out),
            "max_steps": 2,
            "learning_rate": 1e-2,
            "save_steps": 2,
            "seed": 0,
            "use_cpu": True,
            "disable_tqdm": True,
        },
    }


@pytest.mark.parametrize("reward", ["{rm_run}", "log_ratio:{lm},{base}"])
def test_rloo_on_adapters_as_policy_reference_and_reward(
    reward, adapters, smoke_task_dir, tmp_path
):
    """The policy (a run folder whose final is an adapter) and its reference (the adapter
    folder) are the same merged model, so the first step's KL is zero; against the base model
    as reference it is not."""
    names = {**adapters, "base": smoke_task_dir / "pi_init"}
    spec = reward.format(**names)
    raw = _rl_config(smoke_task_dir, tmp_path / "run", adapters["lm_run"], adapters["lm"], spec)
    results = train(resolve("rloo", raw))
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert abs(rows[0]["policy/kl"]) < 1e-5
    assert all(np.isfinite(r["rl/reward"]) for r in rows) and rows[0]["rl/reward"] != 0.0
    assert Path(results["final_checkpoint"]).exists()
    if reward != "{rm_run}":
        return
    base = smoke_task_dir / "pi_init"
    raw = _rl_config(smoke_task_dir, tmp_path / "base", adapters["lm_run"], base, spec)
    raw["training"]["max_steps"] = 1
    train(resolve("rloo", raw))
    first = json.loads((tmp_path / "base" / "metrics.jsonl").read_text().splitlines()[0])
    assert abs(first["policy/kl"]) > 1e-3
