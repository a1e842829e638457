"""Policy-gradient maths for the online loops (RLOO, PPO), with dense per-token rewards.

RLOO: Ahmadian et al. 2024, *Back to Basics: Revisiting REINFORCE Style Optimization for
Learning from Human Feedback in LLMs* (arXiv 2402.14740), Eq. 5: the leave-one-out baseline
A_i = R_i − mean_{j≠i} R_j over the k samples of one prompt; with dense rewards, optionally per
token on the reward-to-go (the same baseline, position by position). PPO: Schulman et al. 2017
(arXiv 1707.06347), Eq. 7 (clipped surrogate), with GAE (Schulman et al. 2016, arXiv 1506.02438,
Eq. 16). Rewards are per token (B, T) everywhere: a sequence-level score is the special case of
all mass on the last response token (`terminal_rewards`), so dense and terminal rewards share
one code path. All tensors are action-aligned (B, T) with a `completion_mask` of response tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor

from irlalign.losses.sft import Metrics, masked_sum


def terminal_rewards(scores: Tensor, completion_mask: Tensor) -> Tensor:
    """(B,) sequence scores -> (B, T) rewards: the score on each row's last response token."""
    m = completion_mask.bool()
    last = m & (m.long().flip(1).cumsum(1).flip(1) == 1)
    zeros = torch.zeros(m.shape, dtype=torch.float32, device=m.device)
    return torch.where(last, scores[:, None].to(torch.float32), zeros)


def kl_penalised_rewards(
    rewards: Tensor, logps: Tensor, ref_logps: Tensor, completion_mask: Tensor, *, kl_coef: float
) -> Tensor:
    """r_t − β·(log π(a_t|s_t) − log π_ref(a_t|s_t)) on response tokens, 0 elsewhere; (B, T)."""
    m = completion_mask.bool()
    shaped = rewards - kl_coef * (logps - ref_logps)
    return torch.where(m, shaped, torch.zeros_like(shaped))


def whiten(x: Tensor, mask: Tensor, *, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """(x − mean) / std over the masked entries (mean kept when ``shift_mean=False``)."""
    m = mask.bool()
    n = m.sum().clamp_min(1)
    mean = masked_sum(x, m) / n
    var = masked_sum((x - mean).pow(2), m) / n
    out = (x - mean) * torch.rsqrt(var + eps)
    return out if shift_mean else out + mean


def rloo_advantages(returns: Tensor, *, k: int) -> Tensor:
    """RLOO (Eq. 5): A_i = R_i − (Σ_{j≠i} R_j)/(k − 1) within each group of k consecutive
    samples of one prompt; ``returns`` (N·k,). Each group's advantages sum to zero."""
    if k < 2:
        raise ValueError("RLOO needs k >= 2 samples per prompt")
    if returns.numel() % k:
        raise ValueError(f"{returns.numel()} returns do not split into groups of k={k}")
    r = returns.reshape(-1, k)
    baseline = (r.sum(1, keepdim=True) - r) / (k - 1)
    return (r - baseline).reshape(-1)


def rloo_token_advantages(
    rewards: Tensor, completion_mask: Tensor, *, k: int, own: Tensor | None = None
) -> Tensor:
    """RLOO with reward-to-go, per token: A_t^i = G_t^i − mean_{j≠i} G_t^j, where
    G_t = Σ_{t' ≥ t} r_{t'} and the k samples of a group (consecutive rows, one prompt, so their
    response columns align) are compared position by position. A token's advantage then holds
    only the rewards that can follow it, and the baseline of row i uses other rows only, so the
    gradient stays unbiased (``rewards`` (N·k, T), 0 past a row's end; returns (N·k, T)). At
    the first response token this is Eq. 5's sequence advantage.

    ``own`` (N·k, T), optional: a part of each token's reward taken out of that token's own
    return (G_t − own_t), for a term whose gradient the loss supplies exactly instead — the
    token's KL penalty when the exact per-state KL is a loss term (`kl_estimator: exact`)."""
    if k < 2:
        raise ValueError("RLOO needs k >= 2 samples per prompt")
    if rewards.shape[0] % k:
        raise ValueError(f"{rewards.shape[0]} rows do not split into groups of k={k}")
    m = completion_mask.bool()
    r = torch.where(m, rewards, torch.zeros_like(rewards))
    to_go = r.flip(1).cumsum(1).flip(1)
    if own is not None:
        to_go = to_go - torch.where(m, own, torch.zeros_like(own))
    to_go = to_go.reshape(-1, k, r.shape[1])
    baseline = (to_go.sum(1, keepdim=True) - to_go) / (k - 1)
    adv = (to_go - baseline).reshape(r.shape)
    return torch.where(m, adv, torch.zeros_like(adv))


def rloo_loss(logps: Tensor, advantages: Tensor, completion_mask: Tensor) -> tuple[Tensor, Metrics]:
    """REINFORCE with the RLOO baseline: L = −mean_i Σ_t A_{i(,t)} · log π(a_t|s_t); ``logps``
    (B, T); ``advantages`` (B,) per sequence (`rloo_advantages`) or (B, T) per token
    (`rloo_token_advantages`)."""
    m = completion_mask.bool()
    adv = advantages.detach()
    if adv.dim() == 1:
        adv = adv[:, None].expand_as(logps)
    loss = -torch.where(m, adv * logps, torch.zeros_like(logps)).sum(1).mean()
    return loss, {"loss/total": loss.detach(), "rl/advantage_abs": advantages.abs().mean()}


def rloo_clipped_loss(
    logps: Tensor, old_logps: Tensor, advantages: Tensor, completion_mask: Tensor, *, clip: float
) -> tuple[Tensor, Metrics]:
    """RLOO's loss when one batch of samples serves several updates: the REINFORCE term with
    the PPO ratio clip (Eq. 7 of Schulman et al. 2017) so that later updates stay near the
    sampling policy, L = −mean_i Σ_t min(ρ_t A_t, clip(ρ_t, 1 ± ε) A_t), ρ = π/π_old. Same
    per-row sum as `rloo_loss`, so at ρ ≡ 1 (the first update) both give the same gradient."""
    m = completion_mask.bool()
    adv = advantages.detach()
    if adv.dim() == 1:
        adv = adv[:, None].expand_as(logps)
    ratio = torch.exp(logps - old_logps.detach())
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    loss = -torch.where(m, surrogate, torch.zeros_like(surrogate)).sum(1).mean()
    n = m.sum().clamp_min(1)
    clipped = ((ratio - 1).abs() > clip) & m
    return loss, {"loss/total": loss.detach(), "rl/clip_frac": clipped.sum() / n}


def exact_kl_loss(kl: Tensor, completion_mask: Tensor, *, kl_coef: float) -> Tensor:
    """β·mean_i Σ_t KL(π(·|s_t) ‖ π_ref(·|s_t)) over response positions: the gradient of the KL
    penalty's immediate term computed over the whole vocabulary, not from the one sampled token
    (the same per-row sum and row mean as `rloo_loss`)."""
    m = completion_mask.bool()
    return kl_coef * torch.where(m, kl, torch.zeros_like(kl)).sum(1).mean()


def gae(
    rewards: Tensor, values: Tensor, completion_mask: Tensor, *, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """GAE (Eq. 16) over response tokens: δ_t = r_t + γV_{t+1} − V_t, A_t = Σ_l (γλ)^l δ_{t+l};
    V after the last response token is 0. Returns (advantages, returns = A + V), both (B, T)."""
    m = completion_mask.bool()
    r = torch.where(m, rewards, torch.zeros_like(rewards))
    v = torch.where(m, values, torch.zeros_like(values))
    adv = torch.zeros_like(r)
    running = torch.zeros_like(r[:, 0])
    for t in reversed(range(r.shape[1])):
        v_next = v[:, t + 1] if t + 1 < r.shape[1] else torch.zeros_like(running)
        delta = r[:, t] + gamma * v_next - v[:, t]
        running = torch.where(m[:, t], delta + gamma * lam * running, torch.zeros_like(running))
        adv[:, t] = running
    return adv, torch.where(m, adv + v, torch.zeros_like(adv))


def ppo_policy_loss(
    logps: Tensor, old_logps: Tensor, advantages: Tensor, completion_mask: Tensor, *, clip: float
) -> tuple[Tensor, Metrics]:
    """Clipped surrogate (Eq. 7), token mean: −min(ρA, clip(ρ, 1 ± ε)A), ρ = π/π_old; (B, T)."""
    m = completion_mask.bool()
    ratio = torch.exp(logps - old_logps.detach())
    adv = advantages.detach()
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    n = m.sum().clamp_min(1)
    loss = -masked_sum(surrogate, m) / n
    clipped = ((ratio - 1).abs() > clip) & m
    metrics = {"loss/policy": loss.detach(), "rl/clip_frac": clipped.sum() / n}
    metrics["rl/approx_kl"] = masked_sum(0.5 * (logps - old_logps).pow(2), m).detach() / n
    return loss, metrics


def ppo_value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    completion_mask: Tensor,
    *,
    clip: float | None,
) -> tuple[Tensor, Metrics]:
    """Clipped value loss, token mean: ½·max((V − R)², (V_old + clip(V − V_old, ±ε) − R)²);
    ``clip=None`` gives the plain ½·(V − R)²."""
    m = completion_mask.bool()
    err = (values - returns).pow(2)
    if clip is not None:
        clipped = old_values + (values - old_values).clamp(-clip, clip)
        err = torch.maximum(err, (clipped - returns).pow(2))
    loss = 0.5 * masked_sum(err, m) / m.sum().clamp_min(1)
    return loss, {"loss/value": loss.detach()}


def standardise_rewards(
    rewards: Tensor, completion_mask: Tensor, *, mean: float, std: float
) -> Tensor:
    """Per-token rewards whose returns become (R − mean)/std: every token is divided by std and
    the mean is taken off the last response token (the standardised reward of RL against AfD's
    reward model, made dense-safe)."""
    m = completion_mask.bool()
    shifted = rewards - terminal_rewards(torch.full_like(rewards[:, 0], mean), m)
    return torch.where(m, shifted / std, torch.zeros_like(rewards))
