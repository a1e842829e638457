"""IQLearn for language models: the offline loss and implicit rewards.

Wulfmeier et al. 2024, *Imitating Language via Scalable Inverse Reinforcement Learning*
(arXiv 2409.01369), Eq. (14): L(v, π) = E_{μ_E}[λ·(v(s) + log π(a|s) − γ·v(s'))² − log π(a|s)],
i.e. Garg et al. 2021's χ² inverse soft-Q objective ("value_expert" form) with λ = 1/(4·α_G),
rewritten as MLE plus a TD regulariser (irlalign ``specs/iqlearn.md`` §2.4, §3.2, §4).
All inputs are action-aligned (B, T) tensors, e.g. from :func:`irlalign.losses.ops.iq_terms`.
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


def sequence_rewards(
    per_token_logps: Tensor,
    r_hat: Tensor,
    v: Tensor,
    completion_mask: Tensor,
    *,
    gamma: float = 1.0,
) -> dict[str, Tensor]:
    """Per-sequence reward summaries (spec §4); inputs (B, T), outputs (B,).

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
