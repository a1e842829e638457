"""PPO (Schulman et al. 2017, arXiv 1707.06347) with per-token rewards, GAE and a value head.

TRL-style RLHF PPO: per-token reward r_t (dense reward-model output, or the
sequence score on the last token) minus β·(log π − log π_ref); GAE (γ, λ) on those rewards;
clipped surrogate and clipped value loss, several epochs of minibatches per rollout batch.
The value head V(s_t) is a scalar head on the policy's own last hidden states (shared
backbone: no second model in memory); `vf_coef` weighs its loss.

The loop, top to bottom: sample → values and log-probs → rewards → GAE → epochs of updates.
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
    gae,
    kl_penalised_rewards,
    ppo_policy_loss,
    ppo_value_loss,
    whiten,
)
from irlalign.modeling.forward import hidden_and_head, response_logps
from irlalign.modeling.heads import VALUE_HEAD, ScalarHead, attach_head, get_head


@dataclass
class PPOConfig(RLConfig):
    k: int = 1  # samples per prompt
    prompts_per_step: int = 32  # per process
    ppo_epochs: int = 4
    num_minibatches: int = 2
    clip: float = 0.2  # ε of the ratio clip
    value_clip: float | None = 0.2  # None: no value clipping
    vf_coef: float = 0.1
    # Rollout iterations at the start that train only the value head (policy loss weight 0): the
    # head starts at V ≡ 0, far from the returns, and its first advantages are mostly noise.
    value_warmup_steps: int = 0
    # The value head reads the policy's hidden states through a stop-gradient: the value loss
    # then trains the head alone and never moves the shared backbone (the policy).
    detach_value: bool = False
    gamma: float = 1.0
    gae_lambda: float = 0.95
    whiten_advantages: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.k, self.prompts_per_step, self.ppo_epochs, self.num_minibatches) < 1:
            raise ValueError("k, prompts_per_step, ppo_epochs and num_minibatches must be >= 1")
        if not (0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
            raise ValueError("gamma must be in (0, 1] and gae_lambda in [0, 1]")
        if self.clip <= 0 or (self.value_clip is not None and self.value_clip <= 0):
            raise ValueError("clip and value_clip must be > 0 (value_clip may be null)")
        if self.vf_coef < 0 or self.value_warmup_steps < 0:
            raise ValueError("vf_coef and value_warmup_steps must be >= 0")


def attach_value_head(model: torch.nn.Module) -> None:
    hidden = model.config.hidden_size
    attach_head(model, VALUE_HEAD, ScalarHead(hidden))


def _forward(ctx: LoopContext, ppo: PPOConfig, ids, am, cm):
    """(log π (B, L − 1), V(s_t) (B, L − 1)): the value of the state each action is taken in."""
    logps, hidden = response_logps(
        ctx.policy, ids, am, cm, ppo.chunk_tokens, ppo.sampling.temperature
    )
    features = hidden[:, :-1].detach() if ppo.detach_value else hidden[:, :-1]
    values = get_head(ctx.policy, VALUE_HEAD)(features)
    return logps, values


def _values(ctx: LoopContext, ids, am):
    """V(s_t) (B, L − 1) alone: the forward without the log-prob head pass."""
    hidden, _ = hidden_and_head(ctx.policy, ids, am)
    return get_head(ctx.policy, VALUE_HEAD)(hidden[:, :-1])


def train_ppo(cfg) -> dict[str, Any]:
    """Run PPO for `training.max_steps` rollout iterations; returns what `eval.json` holds."""
    ctx = setup(cfg, prepare_model=attach_value_head)
    ppo: PPOConfig = cfg.method_config
    while ctx.state.step < ctx.args.max_steps:
        step = ctx.state.step
        # ---- sample from the current policy
        rollouts = rollout(ctx, step)
        batch = tuple(
            t.to(ctx.device)
            for t in (rollouts.input_ids, rollouts.attention_mask, rollouts.completion_mask)
        )
        mask = action_mask(rollouts).to(ctx.device)
        # ---- old log-probs and values, reference log-probs, per-token rewards. The sampler's
        # log-probs are π_old's: same weights (no update since), same temperature, no top-k /
        # top-p (RLConfig refuses them), dropout off; only the values need a forward.
        with torch.no_grad():
            old_logps = rollouts.logps.to(ctx.device)
            old_values = _values(ctx, *batch[:2])
            ref_logps = reference_logps(
                ctx.ref, rollouts, ctx.device, ppo.chunk_tokens, ppo.sampling.temperature
            )
        raw = policy_token_rewards(
            ctx.reward_model, ctx.tokenizer, rollouts, dense=ppo.reward_mode == "dense"
        )
        rewards = normalise(ctx, raw, mask.cpu()).to(ctx.device)
        shaped = kl_penalised_rewards(rewards, old_logps, ref_logps, mask, kl_coef=ppo.kl_coef)
        # ---- GAE advantages and value targets
        adv, returns = gae(shaped, old_values, mask, gamma=ppo.gamma, lam=ppo.gae_lambda)
        if ppo.whiten_advantages:
            adv = whiten(adv, mask)
        # ---- epochs of clipped updates over minibatches of rows
        stats = _update(ctx, ppo, batch, mask, (old_logps, old_values, adv, returns), step)
        ctx.scheduler.step()
        ctx.state.step += 1
        kl = ((old_logps - ref_logps) * mask).sum(1)
        end_step(
            ctx,
            {
                **stats,
                **rollout_metrics(raw, shaped.cpu(), kl.cpu(), mask.cpu(), rollouts),
                "rl/value_mean": float((old_values * mask).sum() / mask.sum().clamp_min(1)),
                "rl/lr": ctx.scheduler.get_last_lr()[0],
            },
            samples=(rollouts, raw),
        )
    return finish(ctx)


def _update(ctx: LoopContext, ppo: PPOConfig, batch, mask, targets, step: int) -> dict[str, float]:
    old_logps, old_values, adv, returns = targets
    rows = mask.shape[0]
    size = max(1, rows // ppo.num_minibatches)
    gen = torch.Generator().manual_seed(ctx.args.seed * 7919 + step)
    sums: dict[str, float] = {}
    count = 0
    for _ in range(ppo.ppo_epochs):
        order = torch.randperm(rows, generator=gen)
        for start in range(0, rows, size):
            idx = order[start : start + size].to(ctx.device)
            logps, values = _forward(ctx, ppo, *(t[idx] for t in batch))
            mb_mask = mask[idx]
            pl, pm = ppo_policy_loss(logps, old_logps[idx], adv[idx], mb_mask, clip=ppo.clip)
            vl, vm = ppo_value_loss(
                values, old_values[idx], returns[idx], mb_mask, clip=ppo.value_clip
            )
            policy_weight = 0.0 if step < ppo.value_warmup_steps else 1.0
            loss = policy_weight * pl + ppo.vf_coef * vl
            ctx.accelerator.backward(loss)
            grad_norm = optimizer_step(ctx)
            for k, v in {
                **pm,
                **vm,
                "loss/total": loss.detach(),
                "rl/grad_norm": grad_norm,
            }.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            count += 1
    return {k: v / count for k, v in sums.items()}
