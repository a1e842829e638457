"""The online stack learns on the default synthetic benchmark (seed 0; multi-seed tables in
benchmarks/online_rl.py).

- RLOO with dense r* and PPO with terminal r* (KL to π_init with β = the task's β, so the
  KL-regularised optimum is π* itself) raise the normalised score far above π_init's ≈ 0.
- AfD: best-of-16 of π_SFT samples under the Init-SFT discriminator, and under the log-ratio
  reward, beats best-of-1 (the plain π_SFT sample).

Measured (seed 0, 256 eval prompts × 4 samples; normalised-score se ≈ 0.015): RLOO dense r*,
25 iterations 0.390 (floor 0.30), gap_closed 0.189 (floor 0.10); PPO terminal r*, 50 iterations
0.293 (floor 0.15); AfD with 300 SFT steps and 200 discriminator steps, best-of-1 →
best-of-16 on 128 prompts: Init-SFT 0.597 → 0.888 (margin asserted 0.15), summed log-ratio
0.597 → 1.118 (margin 0.3).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from irlalign.methods import resolve, train

pytestmark = pytest.mark.learning
ROOT = Path(__file__).resolve().parents[2]
# RLOO with the preset (32 prompts × 8, reward-to-go, lr 2e-3), 25 iterations, seed 0:
# normalised score 0.390, gap_closed 0.189 (at 50 iterations: 0.451 and 0.267).
RLOO_SCORE_FLOOR, RLOO_GAP_FLOOR = 0.30, 0.10


def _preset(name, task_dir, out, **training):
    text = (ROOT / "configs" / "synthetic" / f"{name}.yaml").read_text()
    raw = json.loads(json.dumps(yaml.safe_load(text)).replace("runs/task", str(task_dir)))
    raw["training"].update(
        output_dir=str(out), seed=0, disable_tqdm=True, save_steps=10**6, **training
    )
    return raw


@pytest.mark.parametrize(
    ("method", "mode", "steps", "floor", "gap_floor"),
    [("rloo", "dense", 25, RLOO_SCORE_FLOOR, RLOO_GAP_FLOOR), ("ppo", "terminal", 50, 0.15, None)],
)
def test_rl_against_the_true_reward(
    method, mode, steps, floor, gap_floor, default_task_dir, tmp_path
):
    raw = _preset(method, default_task_dir, tmp_path / method, max_steps=steps, eval_steps=None)
    if raw["training"].pop("lr_scheduler_kwargs", None):  # the RLOO preset's first iterations:
        raw["training"]["lr_scheduler_type"] = "constant_with_warmup"  # before its final decay
    raw["method"]["reward_mode"] = mode
    result = train(resolve(method, raw))["synthetic"]
    print(method, mode, {k: result[k] for k in ("normalised_score", "gap_closed")})
    assert result["normalised_score"] > floor
    if gap_floor is not None:
        assert result["gap_closed"] > gap_floor


@pytest.mark.xdist_group("sft_run")  # one worker trains the shared π_SFT
def test_afd_best_of_n_beats_the_single_sft_sample(default_task_dir, sft_run, tmp_path):
    raw = _preset("afd", default_task_dir, tmp_path / "afd")  # its SFT phase = the SFT preset
    raw["method"].update(bon_n=[1, 16], bon_prompts=128, sft_model=sft_run["final_checkpoint"])
    curves = train(resolve("afd", raw))["best_of_n"]["curves"]
    for ranker, margin in (("init_sft", 0.15), ("log_ratio_sum", 0.3)):
        one, sixteen = (p["normalised_score"] for p in curves[ranker])
        assert sixteen - one > margin, ranker


@pytest.mark.xdist_group("sft_run")  # one worker trains the shared π_SFT
def test_frft_round_improves_on_the_sft_policy(default_task_dir, sft_run, tmp_path):
    """One FRFT round (top-mean subset of 200 + 50 pairs from an 800-pair pool, BT refit, 50 PPO
    iterations against it with the PPO preset's settings, KL 0.05 to π_SFT) raises the gold
    score above π_SFT's. Measured (seed 0) on two π_SFT that differ only by floating-point
    rounding (the fused and the checkpointed SFT loss): 0.603 → 0.670 (KL to π_ref 6.9) and
    0.603 → 0.790 (KL 11.1). At 25 iterations the same two gave 0.579 and 0.742: one short round
    is dominated by which pairs the policy's samples select, so the budget is 50 and the margin
    0.03 (the smaller measured gain is 0.067)."""
    sft = sft_run
    raw = _preset("frft", default_task_dir, tmp_path / "frft")
    raw["model"]["path"] = sft["final_checkpoint"]
    raw["data"]["max_rows"] = 800
    raw["method"].update(rounds=1, arms=["frft"], k=200, k_val=50, n_random_val=200)
    raw["method"]["rl_prompts_per_round"] = 800
    raw["method"]["rl_training"].update(max_steps=50, eval_steps=None)
    res = train(resolve("frft", raw))
    final = res["arms"]["frft"][0]
    print(
        "FRFT learning:", sft["synthetic"]["normalised_score"], final["gold"], final["rm_metrics"]
    )
    assert final["gold"]["normalised_score"] > sft["synthetic"]["normalised_score"] + 0.03
    assert final["rm_metrics"]["refit_accuracy_random_true"] > 0.5
