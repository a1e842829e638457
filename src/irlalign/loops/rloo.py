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
    reference_pass,
    rollout,
    rollout_metrics,
)
from irlalign.losses.ops import token_kl
from irlalign.losses.policy_gradient import (
    exact_kl_loss,
    kl_penalised_rewards,
    rloo_advantages,
    rloo_clipped_loss,
    rloo_loss,
    rloo_token_advantages,
    whiten,
)
from irlalign.modeling.forward import chunk_rows, output_head, response_logps, unwrap


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
    # Updates per batch of samples: `num_iterations` passes over `num_minibatches` minibatches of
    # rows each (TRL's num_iterations). Above one update, later ones reuse stale samples and the
    # loss becomes the ratio-clipped REINFORCE term (`clip` = ε); 1 × 1 is plain RLOO.
    num_iterations: int = 1
    num_minibatches: int = 1
    clip: float = 0.2
    # How the KL penalty's gradient is estimated. "sample": β·(log π − log π_ref) of the sampled
    # token is part of each token's reward (the RLOO paper's form). "exact": each position's KL
    # over the whole vocabulary, KL(π(·|s_t) ‖ π_ref(·|s_t)), is a loss term with its exact
    # gradient and leaves that token's own advantage; later tokens' sampled penalties stay in
    # the reward-to-go. Same expected gradient, less noise; needs advantage: reward_to_go.
    kl_estimator: str = "sample"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 2:
            raise ValueError("RLOO needs k >= 2 samples per prompt")
        if self.advantage not in ("sequence", "reward_to_go"):
            raise ValueError("advantage must be 'sequence' or 'reward_to_go'")
        if min(self.prompts_per_step, self.micro_batch, self.num_iterations) < 1:
            raise ValueError("prompts_per_step, micro_batch and num_iterations must be >= 1")
        if not 1 <= self.num_minibatches <= self.prompts_per_step * self.k:
            raise ValueError("num_minibatches must be between 1 and prompts_per_step × k")
        if self.clip <= 0:
            raise ValueError("clip must be > 0")
        if self.kl_estimator not in ("sample", "exact"):
            raise ValueError("kl_estimator must be 'sample' or 'exact'")
        if self.kl_estimator == "exact" and self.advantage != "reward_to_go":
            raise ValueError("kl_estimator: exact needs advantage: reward_to_go")


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
        ref_logps, ref_hidden = reference_pass(
            ctx.ref,
            rollouts,
            ctx.device,
            rloo.chunk_tokens,
            rloo.sampling.temperature,
            rows=rloo.micro_batch,
        )
        ref_logps = ref_logps.cpu()
        shaped = kl_penalised_rewards(
            rewards, rollouts.logps, ref_logps, mask, kl_coef=rloo.kl_coef
        )
        exact = rloo.kl_estimator == "exact"
        if rloo.advantage == "reward_to_go":
            own = shaped - rewards if exact else None  # −β·(log π − log π_ref) of each token
            adv = rloo_token_advantages(shaped, mask, k=rloo.k, own=own)
            if rloo.normalize_advantages:
                adv = whiten(adv, mask)
        else:
            adv = rloo_advantages(shaped.sum(1), k=rloo.k)
            if rloo.normalize_advantages:
                adv = whiten(adv, torch.ones_like(adv))
        # ---- update: REINFORCE with the leave-one-out baseline (clipped when samples are reused)
        stats = _updates(ctx, rloo, rollouts, adv, ref_hidden if exact else None)
        ctx.scheduler.step()
        ctx.state.step += 1
        kl = ((rollouts.logps - ref_logps) * mask).sum(1)
        end_step(
            ctx,
            {
                **stats,
                **rollout_metrics(raw, shaped, kl, mask, rollouts),
                "rl/lr": ctx.scheduler.get_last_lr()[0],
            },
            samples=(rollouts, raw),
        )
    return finish(ctx)


def _updates(ctx: LoopContext, rloo: RLOOConfig, rollouts, adv, ref_hidden) -> dict[str, float]:
    """`num_iterations` × `num_minibatches` optimizer steps on one batch of samples; the mean
    loss, gradient norm and clip fraction over them. ``ref_hidden`` (the reference's hidden
    states) only with the exact KL term."""
    rows = rollouts.input_ids.shape[0]
    size = -(-rows // rloo.num_minibatches)
    reuse = rloo.num_iterations * rloo.num_minibatches > 1
    gen = torch.Generator().manual_seed(ctx.args.seed * 7919 + ctx.state.step)
    sums: dict[str, float] = {}
    for _ in range(rloo.num_iterations):
        order = torch.randperm(rows, generator=gen) if reuse else torch.arange(rows)
        for start in range(0, rows, size):
            rows_ = order[start : start + size]
            stats = _accumulate(ctx, rloo, rollouts, adv, rows_, reuse, ref_hidden)
            stats["rl/grad_norm"] = optimizer_step(ctx)
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value
    count = rloo.num_iterations * -(-rows // size)
    return {key: value / count for key, value in sums.items()}


def _accumulate(ctx: LoopContext, rloo: RLOOConfig, rollouts, adv, rows, clipped, ref_hidden):
    """Accumulate the gradient of the loss over ``rows`` in micro-batches (memory only: the
    gradient is that of the mean over all of ``rows``)."""
    stats = {"loss/total": 0.0}
    if clipped:
        stats["rl/clip_frac"] = 0.0
    if ref_hidden is not None:
        stats["policy/kl_exact"] = 0.0
    lengths = rollouts.attention_mask.sum(1)
    if len(rows) > rloo.micro_batch:  # micro-batches of similar lengths: less padding
        rows = rows[torch.argsort(lengths[rows], stable=True)]
    for start in range(0, len(rows), rloo.micro_batch):
        idx = rows[start : start + rloo.micro_batch]
        width = int(lengths[idx].max())  # right-padded: later columns are padding only
        ids, am, cm = (
            t[idx, :width].to(ctx.device)
            for t in (rollouts.input_ids, rollouts.attention_mask, rollouts.completion_mask)
        )
        logps, hidden = response_logps(
            ctx.policy, ids, am, cm, rloo.chunk_tokens, rloo.sampling.temperature
        )
        a, share = adv[idx].to(ctx.device), len(idx) / len(rows)
        if a.dim() == 2:
            a = a[:, : width - 1]
        if clipped:
            old = rollouts.logps[idx, : width - 1].to(ctx.device)
            loss, metrics = rloo_clipped_loss(logps, old, a, cm[:, 1:], clip=rloo.clip)
            stats["rl/clip_frac"] += float(metrics["rl/clip_frac"]) * share
        else:
            loss, _ = rloo_loss(logps, a, cm[:, 1:])
        if ref_hidden is not None:
            ref_h = ref_hidden[idx.to(ref_hidden.device), :width]
            kl = _exact_kl(ctx, rloo, hidden, ref_h, cm[:, 1:])
            kl_loss = exact_kl_loss(kl, cm[:, 1:], kl_coef=rloo.kl_coef)
            loss = loss + kl_loss
            stats["policy/kl_exact"] += float(kl.detach().sum(1).mean()) * share
        loss = loss * share  # the mean over all rows, in pieces
        ctx.accelerator.backward(loss)
        stats["loss/total"] += float(loss.detach())
    return stats


def _exact_kl(ctx: LoopContext, rloo: RLOOConfig, hidden, ref_hidden, mask):
    """Per-position KL(π(·|s_t) ‖ π_ref(·|s_t)) at the sampling temperature, (B, L − 1)."""
    temperature = rloo.sampling.temperature
    heads = [output_head(unwrap(m)) for m in (ctx.policy, ctx.ref)]
    scaled = [(lambda h, f=f: f(h) / temperature) for f in heads]
    chunk = chunk_rows(rloo.chunk_tokens, ctx.policy)
    return token_kl(hidden, ref_hidden, mask, *scaled, chunk_tokens=chunk)
