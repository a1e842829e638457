"""PPO (Schulman et al. 2017, arXiv 1707.06347) with per-token rewards, GAE and a value head.

TRL-style RLHF PPO (specs/ava.md §5.2): per-token reward r_t (dense reward-model output, or the
sequence score on the last token) minus β·(log π − log π_ref); GAE (γ, λ) on those rewards;
clipped surrogate and clipped value loss, several epochs of minibatches per rollout batch.
The value head V(s_t) is a scalar head on the policy's own last hidden states (shared
backbone: no second model in memory); `vf_coef` weighs its loss.

The loop, top to bottom: sample → values and log-probs → rewards → GAE → epochs of updates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from irlalign.generation.rewards import policy_token_rewards
from irlalign.generation.sampling import SamplingConfig
from irlalign.losses.policy_gradient import (
    gae,
    kl_penalised_rewards,
    ppo_policy_loss,
    ppo_value_loss,
    whiten,
)
from irlalign.modeling.heads import ScalarHead, attach_head, get_head
from irlalign.trainers import online
from irlalign.trainers.common import response_logps
from irlalign.trainers.online_run import (
    end_step,
    finish,
    normalise,
    optimizer_step,
    rollout,
    rollout_metrics,
    setup,
)

VALUE_HEAD = "value"


@dataclass
class PPOConfig:
    reward_model: str = online.GOLD  # reward-model folder, or "gold" (synthetic r*)
    reward_mode: str = "dense"  # "dense" per-token rewards, or "terminal" sequence scores
    reward_norm: str = "none"  # "none", "batch", "initial"
    kl_coef: float = 0.05  # β: per-token penalty β·(log π − log π_ref)
    k: int = 1  # samples per prompt
    prompts_per_step: int = 32  # per process
    ppo_epochs: int = 4
    num_minibatches: int = 2
    clip: float = 0.2  # ε of the ratio clip
    value_clip: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    gae_lambda: float = 0.95
    whiten_advantages: bool = True
    chunk_tokens: int | None = None
    sampling: Any = field(default_factory=SamplingConfig)

    def __post_init__(self) -> None:
        online.check_reward_fields(self)
        self.sampling = online.sampling_config(self.sampling)
        if min(self.k, self.prompts_per_step, self.ppo_epochs, self.num_minibatches) < 1:
            raise ValueError("k, prompts_per_step, ppo_epochs and num_minibatches must be >= 1")
        if not (0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
            raise ValueError("gamma must be in (0, 1] and gae_lambda in [0, 1]")
        if self.clip <= 0 or self.value_clip <= 0 or self.vf_coef < 0:
            raise ValueError("clip and value_clip must be > 0, vf_coef >= 0")


def attach_value_head(model: torch.nn.Module) -> None:
    hidden = model.config.hidden_size
    attach_head(model, VALUE_HEAD, ScalarHead(hidden))


def _forward(o, m: PPOConfig, ids, am, cm):
    """(log π (B, L − 1), V(s_t) (B, L − 1)): the value of the state each action is taken in."""
    logps, hidden = response_logps(o.policy, ids, am, cm, m.chunk_tokens)
    values = get_head(o.policy, VALUE_HEAD)(hidden[:, :-1])
    return logps, values


def train_ppo(cfg) -> dict[str, Any]:
    """Run PPO for `training.max_steps` rollout iterations; returns what `eval.json` holds."""
    o = setup(cfg, prepare_model=attach_value_head)
    m: PPOConfig = cfg.method_config
    while o.state.step < o.args.max_steps:
        step = o.state.step
        # ---- sample from the current policy
        ro = rollout(o, step)
        batch = tuple(t.to(o.device) for t in (ro.input_ids, ro.attention_mask, ro.completion_mask))
        mask = online.action_mask(ro).to(o.device)
        # ---- old log-probs and values, reference log-probs, per-token rewards
        with torch.no_grad():
            old_logps, old_values = _forward(o, m, *batch)
            ref_logps = online.reference_logps(o.ref, ro, o.device, m.chunk_tokens)
        raw = policy_token_rewards(o.reward_model, o.tokenizer, ro, dense=m.reward_mode == "dense")
        rewards = normalise(o, raw, mask.cpu()).to(o.device)
        shaped = kl_penalised_rewards(rewards, old_logps, ref_logps, mask, kl_coef=m.kl_coef)
        # ---- GAE advantages and value targets
        adv, returns = gae(shaped, old_values, mask, gamma=m.gamma, lam=m.gae_lambda)
        if m.whiten_advantages:
            adv = whiten(adv, mask)
        # ---- epochs of clipped updates over minibatches of rows
        stats = _update(o, m, batch, mask, (old_logps, old_values, adv, returns), step)
        o.scheduler.step()
        o.state.step += 1
        kl = ((old_logps - ref_logps) * mask).sum(1)
        end_step(
            o,
            {
                **stats,
                **rollout_metrics(raw, shaped.cpu(), kl.cpu(), mask.cpu(), ro),
                "rl/value_mean": float((old_values * mask).sum() / mask.sum().clamp_min(1)),
                "rl/lr": o.scheduler.get_last_lr()[0],
            },
        )
    return finish(o)


def _update(o, m: PPOConfig, batch, mask, targets, step: int) -> dict[str, float]:
    old_logps, old_values, adv, returns = targets
    rows = mask.shape[0]
    size = max(1, rows // m.num_minibatches)
    gen = torch.Generator().manual_seed(o.args.seed * 7919 + step)
    sums: dict[str, float] = {}
    count = 0
    for _ in range(m.ppo_epochs):
        order = torch.randperm(rows, generator=gen)
        for start in range(0, rows, size):
            idx = order[start : start + size].to(o.device)
            logps, values = _forward(o, m, *(t[idx] for t in batch))
            mb_mask = mask[idx]
            pl, pm = ppo_policy_loss(logps, old_logps[idx], adv[idx], mb_mask, clip=m.clip)
            vl, vm = ppo_value_loss(
                values, old_values[idx], returns[idx], mb_mask, clip=m.value_clip
            )
            loss = pl + m.vf_coef * vl
            o.accelerator.backward(loss)
            grad_norm = optimizer_step(o)
            for k, v in {
                **pm,
                **vm,
                "loss/total": loss.detach(),
                "rl/grad_norm": grad_norm,
            }.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            count += 1
    return {k: v / count for k, v in sums.items()}
