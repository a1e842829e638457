"""Maximum-likelihood (SFT) losses, plain and with an entropy bonus.

The MLE baseline and the "MLE with entropy regularisation" baseline of Wulfmeier et al. 2024,
*Imitating Language via Scalable Inverse Reinforcement Learning* (arXiv 2409.01369):
L_MLE = E_{μ_E}[−log π(a|s)] and L_MLE+H = E_{μ_E}[−log π(a|s) − β·H(π(·|s))]. Every
token-level loss uses :func:`mle_term`, so the MLE part (and its normaliser) is computed in
exactly one way.
"""

from __future__ import annotations

import torch
from torch import Tensor

Metrics = dict[str, Tensor]


def normaliser(completion_mask: Tensor, num_items: float | Tensor | None) -> float | Tensor:
    """The token count every term divides by: ``num_items`` if given (e.g. HF's
    ``num_items_in_batch`` under gradient accumulation), else the number of response tokens."""
    if num_items is not None:
        return num_items
    return completion_mask.sum().clamp_min(1).float()


def masked_sum(x: Tensor, mask: Tensor) -> Tensor:
    """Σ x over ``mask``; masked-out entries are replaced, not multiplied, so a non-finite value at
    a pad position cannot leak into the sum or its gradient."""
    return torch.where(mask.bool(), x, torch.zeros_like(x)).sum()


def mle_term(
    per_token_logps: Tensor, completion_mask: Tensor, num_items: float | Tensor | None
) -> Tensor:
    """Σ_t −log π(a_t|s_t)·m_t / N, the MLE term shared by SFT, MLE+H and IQLearn."""
    return -masked_sum(per_token_logps, completion_mask) / normaliser(completion_mask, num_items)


def sft_loss(
    per_token_logps: Tensor,
    completion_mask: Tensor,
    *,
    num_items: float | Tensor | None = None,
) -> tuple[Tensor, Metrics]:
    """Token-level cross-entropy: L = Σ_t m_t·(−log π(a_t|s_t)) / N.

    ``per_token_logps``, ``completion_mask`` (B, T); N = ``num_items`` or Σ m.
    Metrics: ``loss/total``, ``loss/mle``.
    """
    mle = mle_term(per_token_logps, completion_mask, num_items)
    return mle, {"loss/total": mle.detach(), "loss/mle": mle.detach()}


def sft_entropy_loss(
    per_token_logps: Tensor,
    entropy: Tensor,
    completion_mask: Tensor,
    *,
    beta: float,
    num_items: float | Tensor | None = None,
) -> tuple[Tensor, Metrics]:
    """MLE with an entropy bonus: L = Σ_t m_t·(−log π(a_t|s_t) − β·H(π(·|s_t))) / N.

    ``entropy`` (B, T) is H over the full logit row at the position that predicts a_t; same mask
    and normaliser as the MLE term; β ≥ 0 rewards entropy and β = 0 is exactly :func:`sft_loss`.
    Metrics: ``loss/total``, ``loss/mle``, ``policy/entropy``.
    """
    mle = mle_term(per_token_logps, completion_mask, num_items)
    ent = masked_sum(entropy, completion_mask) / normaliser(completion_mask, num_items)
    loss = mle - beta * ent
    metrics = {"loss/total": loss.detach(), "loss/mle": mle.detach()}
    metrics["policy/entropy"] = ent.detach()
    return loss, metrics
