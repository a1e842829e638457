"""AVA (reward model and direct optimisation) and the Preference Transformer on the tiny model,
and the one reward-model interface (`score`, `token_rewards`) over all three reward models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import load_from_disk
from transformers import AutoModelForCausalLM

from conftest import raw_config
from irlalign.cli.main import main
from irlalign.methods import resolve, train
from irlalign.modeling.heads import HEADS_CONFIG, get_head, load_heads
from irlalign.modeling.reward import (
    AVAReward,
    PreferenceTransformerReward,
    RewardModel,
    SequenceClassifierReward,
    load_reward_model,
)


def _lm_params(folder):
    model = AutoModelForCausalLM.from_pretrained(folder)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _pairs(task, n=8):
    rows = load_from_disk(str(task / "preferences"))["test"].select(range(n))
    return list(rows["prompt"]), list(rows["chosen"]), list(rows["rejected"])


@pytest.fixture(scope="module")
def trained(smoke_task_dir, tmp_path_factory):
    """One short run per reward model, shared by the tests below."""
    out = tmp_path_factory.mktemp("rms")
    finals = {}
    for method in ("ava", "preference_transformer", "reward"):
        cfg = raw_config(smoke_task_dir, out / method, method)
        finals[method] = train(resolve(method, cfg))["final_checkpoint"]
    return finals


def test_ava_reward_model_trains_heads_and_lm(trained, smoke_task_dir):
    final = trained["ava"]
    spec = json.loads((Path(final) / HEADS_CONFIG).read_text())["reward"]
    assert spec["kind"] == "gaussian" and spec["rwt"] == "attn_full" and spec["shift"] == 1
    assert spec["rwt_rescale"] is True and spec["score"] == "last"  # AVA-p: CER's score
    model = AutoModelForCausalLM.from_pretrained(final)
    assert load_heads(model, final) == ["reward"]
    head = get_head(model, "reward")
    assert head.proj.weight.abs().sum() > 0  # zero-initialised, so it was trained
    before, after = _lm_params(smoke_task_dir / "pi_init"), _lm_params(final)
    # Trained jointly, with no stop-gradient: the TD term moves the LM too.
    assert any(not torch.equal(before[n], after[n]) for n in after)


@pytest.mark.parametrize("method", ["ava", "preference_transformer", "reward"])
def test_reward_interface_and_identical_scores_after_reload(method, trained, smoke_task_dir):
    rm = load_reward_model(trained[method])
    kind = {"ava": AVAReward, "preference_transformer": PreferenceTransformerReward}
    assert isinstance(rm, kind.get(method, SequenceClassifierReward))
    assert isinstance(rm, RewardModel)
    prompts, chosen, _ = _pairs(smoke_task_dir)
    scores = rm.score(prompts, chosen)
    assert scores.shape == (len(prompts),) and np.isfinite(scores).all()
    again = load_reward_model(trained[method]).score(prompts, chosen)
    assert np.array_equal(scores, again)
    # Batching and padding do not change a score.
    one_by_one = np.concatenate([rm.score([p], [c]) for p, c in zip(prompts, chosen, strict=True)])
    np.testing.assert_allclose(scores, one_by_one, atol=1e-5)
    rows = rm.token_rewards(prompts, chosen)
    assert len(rows) == len(prompts)
    for row, s in zip(rows, scores, strict=True):
        assert len(row.rewards) == len(row.token_ids) > 0
        if method == "ava":
            assert row.sigma is not None and (row.sigma > 0).all()
            assert row.rewards[-1] == pytest.approx(s, abs=1e-5)  # score = last-token mean
        else:
            assert row.sigma is None
            assert row.rewards.sum() == pytest.approx(s, abs=1e-4)  # total = sequence score
    if method == "reward":
        assert all((r.rewards[:-1] == 0).all() for r in rows)  # terminal-only


def test_eval_rm_cli_on_every_reward_model(trained, smoke_task_dir, capsys):
    for folder in trained.values():
        assert main(["synthetic", "eval-rm", "--task", str(smoke_task_dir), "--rm", folder]) == 0
        out = json.loads(capsys.readouterr().out)
        assert 0 <= out["pairwise_accuracy"] <= 1 and -1 <= out["spearman"] <= 1


def test_ava_d_direct_optimisation_changes_the_lm(smoke_task_dir, tmp_path):
    cfg = raw_config(smoke_task_dir, tmp_path / "ava_d", "ava")
    cfg["data"]["train"] = str(smoke_task_dir / "demos")
    cfg["eval"] = {"synthetic_task": str(smoke_task_dir), "samples": 1}
    results = train(resolve("ava", cfg))
    before, after = _lm_params(smoke_task_dir / "pi_init"), _lm_params(results["final_checkpoint"])
    assert any(not torch.equal(before[n], after[n]) for n in after)
    assert "normalised_score" in results["synthetic"]  # decoded as an ordinary policy
    assert "pairwise_accuracy" in results["synthetic_rm"]
    # As a reward model it is read by the summed posterior mean of the transitions AVA-d trains:
    # every response token's dense reward but the final one's.
    final = results["final_checkpoint"]
    assert json.loads((Path(final) / HEADS_CONFIG).read_text())["reward"]["score"] == "sum"
    rm = load_reward_model(final)
    prompts, chosen, _ = _pairs(smoke_task_dir, 4)
    sums = [row.rewards[:-1].sum() for row in rm.token_rewards(prompts, chosen)]
    np.testing.assert_allclose(rm.score(prompts, chosen), sums, rtol=1e-5, atol=1e-6)
    logs = [json.loads(x) for x in (tmp_path / "ava_d" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in logs if "loss" in r)


@pytest.mark.parametrize(
    "ablation",
    [
        {"rwt": "none"},
        {"rwt": "attn_causal", "rwt_rescale": False},
        {"use_neg": False},
        {"use_irl": False},
        {"cer_coef": 0.0},
        {"q_head": "fresh"},
        {"chosen_only": True},
        {"beta": 2.0, "shift": 0, "ll_range": "paper", "cer_log": True, "rwt_rescale": False},
    ],
)
def test_every_table1_ablation_runs(ablation, smoke_task_dir, tmp_path):
    cfg = raw_config(smoke_task_dir, tmp_path / "abl", "ava", max_steps=2, save_steps=100)
    cfg["method"] = ablation
    results = train(resolve("ava", cfg))
    logs = [json.loads(x) for x in (tmp_path / "abl" / "metrics.jsonl").read_text().splitlines()]
    assert [np.isfinite(r["loss"]) for r in logs if "loss" in r] == [True, True]
    rm = load_reward_model(results["final_checkpoint"])
    prompts, chosen, _ = _pairs(smoke_task_dir, 2)
    assert np.isfinite(rm.score(prompts, chosen)).all()


@pytest.mark.parametrize("method", ["ava", "preference_transformer", "reward"])
def test_rewards_cli_writes_reward_model_token_rewards(method, trained, smoke_task_dir, tmp_path):
    from irlalign.modeling.reward import is_reward_model_folder

    assert is_reward_model_folder(trained[method])
    assert not is_reward_model_folder(smoke_task_dir / "pi_init")
    data = tmp_path / "rows.jsonl"
    prompts, chosen, _ = _pairs(smoke_task_dir, 3)
    pairs = zip(prompts, chosen, strict=True)
    lines = [json.dumps({"prompt": p, "completion": c}) for p, c in pairs]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.jsonl"
    argv = ["rewards", "--model", trained[method], "--data", str(data), "--out", str(out)]
    assert main(argv) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    scores = load_reward_model(trained[method]).score(prompts, chosen)
    assert len(rows) == 3
    for row, score in zip(rows, scores, strict=True):
        assert len(row["tokens"]) == len(row["rewards"]) and row["tokens"][-1] == "<eos>"
        assert row["score"] == pytest.approx(float(score), abs=1e-6)
        assert (row["sigma"] is not None) == (method == "ava")
