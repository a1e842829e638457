"""IQLearn for language models: the offline loss and implicit rewards.

Wulfmeier et al. 2024, *Imitating Language via Scalable Inverse Reinforcement Learning*
(arXiv 2409.01369), Eq. (14): L(v, π) = E_{μ_E}[λ·(v(s) + log π(a|s) − γ·v(s'))² − log π(a|s)],
i.e. Garg et al. 2021's χ² inverse soft-Q objective ("value_expert" form) with λ = 1/(4·α_G),
rewritten as MLE plus a TD regulariser (the paper's key identity).
All inputs are action-aligned (B, T) tensors, e.g. from :func:`irlalign.losses.ops.iq_terms`.

Online IQLearn is a **reconstruction** from the online form of Garg et al.'s IQ-Learn code: the
paper's own Eq. (15)/(16) is not known.
With α the mix-in ratio (``mix_in``) and μ_mix = (1−α)·μ_E + α·μ_π, it minimises

    L_online = E_{μ_E}[−log π(a|s)] + λ·E_{μ_mix}[(V(s) + log π(a|s) − γV(s'))²]
               + α·(E_{μ_π}[V(s) − γV(s')] − E_{μ_E}[V(s) − γV(s')]),

split into an expert side (:func:`iqlearn_online_expert_loss`) and a policy side
(:func:`iqlearn_online_policy_loss`) whose sum is L_online; α = 0 is the offline loss exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from irlalign.losses.sft import Metrics, masked_sum, mle_term, normaliser


def implicit_rewards(
    per_token_logps: Tensor, v: Tensor, v_next: Tensor, terminal: Tensor, *, gamma: float
) -> tuple[Tensor, Tensor]:
    """Inverse soft Bellman operator: r_t = V(s_t) + log π(a_t|s_t) − γ·V(s_{t+1}).

    V(s_{t+1}) is set to 0 where ``terminal`` (a_t is the final EOS). All (B, T).
    Returns ``(r_hat, v_next)`` with the zeroed ``v_next``.
    """
    v_next = torch.where(terminal, torch.zeros_like(v_next), v_next)
    return v + per_token_logps - gamma * v_next, v_next


def iqlearn_offline_loss(
    per_token_logps: Tensor,
    r_hat: Tensor,
    completion_mask: Tensor,
    td_mask: Tensor,
    *,
    lam: float,
    num_items: float | Tensor | None = None,
) -> tuple[Tensor, Metrics]:
    """Eq. (14): L = Σ_t m_t·(−log π(a_t|s_t)) / N + λ·Σ_t u_t·r_t² / N, one normaliser N.

    ``completion_mask`` m (MLE term), ``td_mask`` u (TD term), all (B, T); N as in
    :func:`irlalign.losses.sft.sft_loss`, so ``lam=0`` returns a loss bitwise equal to SFT's.
    Metrics: ``loss/total``, ``loss/mle``, ``loss/td``, ``iq/r_hat`` (mean r_t over u).
    """
    mle = mle_term(per_token_logps, completion_mask, num_items)
    td = masked_sum(r_hat.pow(2), td_mask) / normaliser(completion_mask, num_items)
    # mle + 0.0 * td == mle exactly for finite td: this is what makes λ = 0 bitwise SFT.
    loss = mle + lam * td
    r_mean = masked_sum(r_hat.detach(), td_mask) / td_mask.sum().clamp_min(1)
    metrics = {"loss/total": loss.detach(), "loss/mle": mle.detach(), "loss/td": td.detach()}
    metrics["iq/r_hat"] = r_mean
    return loss, metrics


def value_step_mean(
    v: Tensor,
    v_next: Tensor,
    td_mask: Tensor,
    *,
    gamma: float,
    num_items: float | Tensor | None = None,
) -> Tensor:
    """E[V(s) − γ·V(s')] = Σ_t u_t·(V(s_t) − γ·V(s_{t+1})) / N, the value term of L_online.

    ``v``, ``v_next`` (B, T) as from :func:`implicit_rewards` (``v_next`` already 0 after the
    terminal EOS, the bootstrap value after a truncated response); ``td_mask`` u marks the
    transitions used, so ``truncation="drop"`` drops a truncated row's last transition from this
    term as from the TD term; N = ``num_items`` or Σ u.
    """
    return masked_sum(v - gamma * v_next, td_mask) / normaliser(td_mask, num_items)


def iqlearn_online_expert_loss(
    per_token_logps: Tensor,
    r_hat: Tensor,
    v: Tensor,
    v_next: Tensor,
    completion_mask: Tensor,
    td_mask: Tensor,
    *,
    lam: float,
    mix_in: float,
    gamma: float,
    value_diff: bool = True,
    num_items: float | Tensor | None = None,
) -> tuple[Tensor, Metrics]:
    """Expert side of online IQLearn (Wulfmeier et al. 2024; a reconstruction):
    L_E = Σ_t m_t·(−log π_t)/N + λ·(1−α)·Σ_t u_t·r_t²/N  [− α·Σ_t u_t·(V_t − γV_{t+1})/N].

    The bracket is the expert half of the value-difference term (with ``value_diff``). It is
    Eq. (14) with λ → λ·(1−α) (the same function, so α = 0 is the offline loss bit for bit).
    Metrics: those of :func:`iqlearn_offline_loss` (``loss/total`` is L_E) and
    ``iq/value_expert`` (E_E[V − γV'], logged even without ``value_diff``).
    """
    loss, metrics = iqlearn_offline_loss(
        per_token_logps,
        r_hat,
        completion_mask,
        td_mask,
        lam=lam * (1.0 - mix_in),
        num_items=num_items,
    )
    # One normaliser for every expert term, the MLE one: keeps λ's meaning and the α = 0 identity.
    n = normaliser(completion_mask, num_items)
    value = value_step_mean(v, v_next, td_mask, gamma=gamma, num_items=n)
    if value_diff:
        loss = loss - mix_in * value
    metrics["loss/total"] = loss.detach()
    metrics["iq/value_expert"] = value.detach()
    return loss, metrics


def iqlearn_online_policy_loss(
    r_hat: Tensor,
    v: Tensor,
    v_next: Tensor,
    completion_mask: Tensor,
    td_mask: Tensor,
    *,
    lam: float,
    mix_in: float,
    gamma: float,
    value_diff: bool = True,
    num_items: float | Tensor | None = None,
) -> tuple[Tensor, Metrics]:
    """Policy side of online IQLearn (Wulfmeier et al. 2024; a reconstruction):
    L_π = λ·α·Σ_t u_t·r_t²/N_π  [+ α·Σ_t u_t·(V_t − γV_{t+1})/N_π].

    Inputs are the (B, T) terms of the policy's own samples (a_t = the sampled token); there is no
    MLE term on samples. N_π = ``num_items`` or the samples' response-token count. The bracket
    (with ``value_diff``) is the policy half of the value-difference term.
    Metrics: ``loss/td_policy`` (Σ u·r²/N_π), ``iq/value_policy`` (E_π[V − γV']),
    ``iq/r_hat_policy`` (mean r_t over u).
    """
    n = normaliser(completion_mask, num_items)
    td = masked_sum(r_hat.pow(2), td_mask) / n
    value = value_step_mean(v, v_next, td_mask, gamma=gamma, num_items=n)
    loss = lam * mix_in * td
    if value_diff:
        loss = loss + mix_in * value
    r_mean = masked_sum(r_hat.detach(), td_mask) / td_mask.sum().clamp_min(1)
    metrics = {"loss/td_policy": td.detach(), "iq/value_policy": value.detach()}
    metrics["iq/r_hat_policy"] = r_mean
    return loss, metrics


def sequence_rewards(
    per_token_logps: Tensor,
    r_hat: Tensor,
    v: Tensor,
    completion_mask: Tensor,
    *,
    gamma: float = 1.0,
) -> dict[str, Tensor]:
    """Per-sequence reward summaries; inputs (B, T), outputs (B,).

    ``sequence_reward`` Σ_t r_t; ``sequence_reward_discounted`` Σ_t γ^k r_t with k counted from the
    first response action; ``sequence_logp`` log π(y|x) = Σ_t log π_t; ``v0`` V(s_0), the value at
    the first response action (0 for an empty row). With γ = 1 and an EOS terminal,
    Σ_t r_t = log π(y|x) + V(s_0) (telescoping).
    """
    m = completion_mask.bool()
    zeros = torch.zeros_like(r_hat)
    k = (m.long().cumsum(1) - 1).clamp_min(0).to(r_hat.dtype)
    discount = torch.full_like(r_hat, gamma).pow(k)
    first = m & (m.long().cumsum(1) == 1)
    return {
        "sequence_reward": torch.where(m, r_hat, zeros).sum(1),
        "sequence_reward_discounted": torch.where(m, discount * r_hat, zeros).sum(1),
        "sequence_logp": torch.where(m, per_token_logps, zeros).sum(1),
        "v0": torch.where(first, v, torch.zeros_like(v)).sum(1),
    }
