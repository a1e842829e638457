"""AfD (Alignment from Demonstrations): the discriminator loss and the rewards read from it.

Sun & van der Schaar, *Inverse-RLignment* (arXiv 2405.15624): an IRL reward model is a binary
classifier D = σ(ℓ) of π_SFT samples (label 1) against π_init samples (label 0), trained with
binary cross-entropy, and its reward is the logit ℓ. The zero-training baseline is the log-ratio
reward log π_SFT(y|x) − log π_init(y|x), the optimal discriminator's logit for balanced classes,
summed or length-normalised. The adversarial extension (an iterative loop the paper motivates but
does not run) reads two rewards from one discriminator: AIRL's log D − log(1 − D) = ℓ and GAIL's
−log(1 − D) = softplus(ℓ).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from irlalign.losses.sft import Metrics


def _class_means(logits: Tensor, positive: Tensor) -> Metrics:
    # A batch may hold one class only; its mean is then left out rather than logged as NaN,
    # which would poison the MetricStore average over the logging window.
    out: Metrics = {}
    for name, rows in (("rewards/pos_mean", positive), ("rewards/neg_mean", ~positive)):
        if bool(rows.any()):
            out[name] = logits[rows].mean()
    return out


def bce_discriminator_loss(
    logits: Tensor, labels: Tensor, *, label_smoothing: float = 0.0
) -> tuple[Tensor, Metrics]:
    """Binary cross-entropy on logits: L = mean_b[−y'_b·log σ(ℓ_b) − (1 − y'_b)·log σ(−ℓ_b)],
    y' = (1 − ε)·y + ε/2 (ε = ``label_smoothing``; ε = 0 is plain BCE).

    ``logits`` ℓ (B,), ``labels`` y (B,) in [0, 1], 1 = the positive class (π_SFT samples or
    demonstrations). Metrics: ``loss/total``, ``rewards/accuracy`` (ℓ > 0 agrees with y > 0.5),
    ``rewards/pos_mean`` / ``rewards/neg_mean`` (mean ℓ of each class; absent when the batch has
    no row of that class).
    """
    if logits.shape != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ")
    labels = labels.to(logits.dtype)
    targets = labels * (1.0 - label_smoothing) + 0.5 * label_smoothing
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    detached, positive = logits.detach(), labels.detach() > 0.5
    metrics: Metrics = {
        "loss/total": loss.detach(),
        "rewards/accuracy": ((detached > 0) == positive).float().mean(),
    }
    metrics.update(_class_means(detached, positive))
    return loss, metrics


def airl_reward(logits: Tensor) -> Tensor:
    """AIRL-style reward r = log D − log(1 − D) with D = σ(ℓ), which is exactly the logit ℓ."""
    return logits


def gail_reward(logits: Tensor) -> Tensor:
    """GAIL-style reward r = −log(1 − D) = −log σ(−ℓ) = softplus(ℓ) > 0 (stable for large |ℓ|)."""
    return F.softplus(logits)


def log_ratio_per_token(sft_logps: Tensor, init_logps: Tensor, completion_mask: Tensor) -> Tensor:
    """Per-token log-ratio r_t = m_t·(log π_SFT(a_t|s_t) − log π_init(a_t|s_t)), (B, T).

    Masked entries are replaced by 0 (not multiplied), so a non-finite log-prob at a pad
    position cannot leak into sums or gradients.
    """
    diff = sft_logps - init_logps
    return torch.where(completion_mask.bool(), diff, torch.zeros_like(diff))


def log_ratio_rewards(
    sft_logps: Tensor, init_logps: Tensor, completion_mask: Tensor
) -> tuple[Tensor, Tensor]:
    """AfD's zero-training reward per sequence, in both forms:
    summed R = Σ_t m_t·(log π_SFT − log π_init) and length-normalised R / Σ_t m_t.

    Inputs (B, T), action-aligned per-token log-probs with ``completion_mask`` = 1 on response
    actions. Returns ``(summed, normalised)``, each (B,); a row without response tokens gets 0.
    """
    per_token = log_ratio_per_token(sft_logps, init_logps, completion_mask)
    summed = per_token.sum(-1)
    lengths = completion_mask.bool().sum(-1).clamp_min(1).to(summed.dtype)
    return summed, summed / lengths
