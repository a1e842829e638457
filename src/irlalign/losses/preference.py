"""Pairwise preference losses: Bradley–Terry reward modelling and sigmoid DPO.

Bradley & Terry 1952 (as used for reward models by Ouyang et al. 2022, Eq. 1):
L = −E[log σ(r(x, y_c) − r(x, y_r))]. DPO: Rafailov et al. 2023, *Direct Preference
Optimization*, Eq. 7, with the conservative label smoothing of TRL's ``"sigmoid"`` loss
(Mitchell 2023, "cDPO").
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from irlalign.losses.sft import Metrics


def _pair_metrics(chosen: Tensor, rejected: Tensor) -> Metrics:
    chosen, rejected = chosen.detach(), rejected.detach()
    return {
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
        "rewards/accuracy": (chosen > rejected).float().mean(),
        "rewards/margin": (chosen - rejected).mean(),
    }


def bradley_terry_loss(
    chosen_rewards: Tensor, rejected_rewards: Tensor, *, margin: float = 0.0
) -> tuple[Tensor, Metrics]:
    """Bradley–Terry: L = mean_b[−log σ(r_c − r_r − margin)]; rewards (B,).

    Metrics: ``loss/total``, ``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracy``
    (r_c > r_r), ``rewards/margin`` (mean r_c − r_r).
    """
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards - margin).mean()
    metrics = _pair_metrics(chosen_rewards, rejected_rewards)
    metrics["loss/total"] = loss.detach()
    return loss, metrics


def dpo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Metrics]:
    """Sigmoid DPO: L = mean_b[−(1−ε)·log σ(β·h) − ε·log σ(−β·h)],
    h = (log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r)).

    All inputs are sequence log-probability sums (B,). Implicit rewards β·(log π − log π_ref)
    give ``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracy``, ``rewards/margin``;
    also ``loss/total``.
    """
    chosen_logratios = chosen_logps - ref_chosen_logps
    rejected_logratios = rejected_logps - ref_rejected_logps
    logits = beta * (chosen_logratios - rejected_logratios)
    losses = -(1.0 - label_smoothing) * F.logsigmoid(logits)
    losses = losses - label_smoothing * F.logsigmoid(-logits)
    loss = losses.mean()
    metrics = _pair_metrics(beta * chosen_logratios, beta * rejected_logratios)
    metrics["loss/total"] = loss.detach()
    return loss, metrics
