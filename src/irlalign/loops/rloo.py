"""RLOO (Ahmadian et al. 2024, arXiv 2402.14740): k samples per prompt, the leave-one-out mean
of the other samples' returns as the baseline (Eq. 5), one REINFORCE update per batch.

Returns are sums of per-token rewards, so dense rewards (AVA's μ_t, IQLearn's r̂_t, the
synthetic r*) and terminal scores share the loop; the per-token KL penalty to the frozen
reference is part of the return (the "sequence-level KL" of the paper's RLOO).

The loop, top to bottom: sample → reward → reference log-probs → advantages → update → log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from irlalign.generation.rewards import policy_token_rewards
from irlalign.loops.setup import LoopContext, RLConfig, setup
from irlalign.loops.step import (
    action_mask,
    end_step,
    finish,
    normalise,
    optimizer_step,
    reference_logps,
    rollout,
    rollout_metrics,
)
from irlalign.losses.policy_gradient import (
    kl_penalised_rewards,
    rloo_advantages,
    rloo_loss,
    rloo_token_advantages,
    whiten,
)
from irlalign.modeling.forward import response_logps


@dataclass
class RLOOConfig(RLConfig):
    k: int = 4  # samples per prompt (the RLOO group)
    prompts_per_step: int = 16  # per process
    micro_batch: int = 64  # rows per forward/backward (memory only; the update is the same)
    # "sequence": Eq. 5, one advantage per response from its whole return; "reward_to_go": per
    # token, from the rewards at and after it (same leave-one-out baseline, position by
    # position), which drops the noise of earlier rewards when rewards are dense.
    advantage: str = "sequence"
    normalize_advantages: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 2:
            raise ValueError("RLOO needs k >= 2 samples per prompt")
        if self.advantage not in ("sequence", "reward_to_go"):
            raise ValueError("advantage must be 'sequence' or 'reward_to_go'")
        if self.prompts_per_step < 1 or self.micro_batch < 1:
            raise ValueError("prompts_per_step and micro_batch must be >= 1")


def train_rloo(cfg) -> dict[str, Any]:
    """Run RLOO for `training.max_steps` steps; returns what `eval.json` holds."""
    ctx = setup(cfg)
    rloo: RLOOConfig = cfg.method_config
    while ctx.state.step < ctx.args.max_steps:
        # ---- sample: k continuations of this step's prompts from the current policy
        rollouts = rollout(ctx, ctx.state.step)
        mask = action_mask(rollouts)
        # ---- reward: per-token (dense) or on the last token (terminal), then the KL penalty
        raw = policy_token_rewards(
            ctx.reward_model, ctx.tokenizer, rollouts, dense=rloo.reward_mode == "dense"
        )
        rewards = normalise(ctx, raw, mask)
        ref_logps = reference_logps(
            ctx.ref, rollouts, ctx.device, rloo.chunk_tokens, rloo.sampling.temperature
        ).cpu()
        shaped = kl_penalised_rewards(
            rewards, rollouts.logps, ref_logps, mask, kl_coef=rloo.kl_coef
        )
        if rloo.advantage == "reward_to_go":
            adv = rloo_token_advantages(shaped, mask, k=rloo.k)
            if rloo.normalize_advantages:
                adv = whiten(adv, mask)
        else:
            adv = rloo_advantages(shaped.sum(1), k=rloo.k)
            if rloo.normalize_advantages:
                adv = whiten(adv, torch.ones_like(adv))
        # ---- update: one REINFORCE step with the leave-one-out baseline
        loss_sum = _update(ctx, rloo, rollouts, adv)
        grad_norm = optimizer_step(ctx)
        ctx.scheduler.step()
        ctx.state.step += 1
        kl = ((rollouts.logps - ref_logps) * mask).sum(1)
        end_step(
            ctx,
            {
                "loss/total": loss_sum,
                **rollout_metrics(raw, shaped, kl, mask, rollouts),
                "rl/grad_norm": grad_norm,
                "rl/lr": ctx.scheduler.get_last_lr()[0],
            },
        )
    return finish(ctx)


def _update(ctx: LoopContext, rloo: RLOOConfig, rollouts, adv) -> float:
    """Accumulate the gradient of the batch loss over micro-batches of rows."""
    rows = rollouts.input_ids.shape[0]
    total = 0.0
    for start in range(0, rows, rloo.micro_batch):
        sl = slice(start, start + rloo.micro_batch)
        ids, am, cm = (
            t[sl].to(ctx.device)
            for t in (rollouts.input_ids, rollouts.attention_mask, rollouts.completion_mask)
        )
        logps, _ = response_logps(
            ctx.policy, ids, am, cm, rloo.chunk_tokens, rloo.sampling.temperature
        )
        loss, _ = rloo_loss(logps, adv[sl].to(ctx.device), cm[:, 1:])
        loss = loss * (ids.shape[0] / rows)  # the mean over all rows, in pieces
        ctx.accelerator.backward(loss)
        total += float(loss.detach())
    return total
