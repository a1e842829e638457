"""An attention implementation that also hands back every layer's raw query–key scores.

AVA's reward weights (Cai et al. 2024, Eq. 11) softmax the last layer's scores q_i·k_t over *all*
response positions, later ones included. No built-in implementation returns scores before the
causal mask, so :data:`SCORES_ATTENTION` runs the layer's own eager attention (its outputs, and so
the model, are unchanged) and returns, where eager returns the post-softmax weights, the scaled
scores q_i·k_t·c (B, H, L, L) for every pair of positions with no mask applied; c is the layer's
own scaling (1/√d_head for most models; soft-capping, where a model has it, is not applied to
these scores). Grouped-query keys are repeated to the query heads. Costs one extra (B, H, L, L)
product per layer on top of eager attention.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

from irlalign.modeling.forward import unwrap

SCORES_ATTENTION = "irlalign_eager_scores"


def _eager_with_scores(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[Tensor, Tensor]:
    eager = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if eager is None:
        raise ValueError(
            f"{type(module).__name__} has no eager_attention_forward in its modeling file: "
            'reward weights over all positions (rwt="attn_full") are not available for it; '
            'use rwt="attn_causal" or rwt="none"'
        )
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    out, _ = eager(
        module, query, key, value, attention_mask, scaling=scale, dropout=dropout, **kwargs
    )
    keys = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    return out, query @ keys.transpose(-1, -2) * scale


def register_scores_attention() -> None:
    """Make :data:`SCORES_ATTENTION` known to transformers (idempotent); masks as eager's."""
    from transformers.masking_utils import AttentionMaskInterface, eager_mask
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(SCORES_ATTENTION, _eager_with_scores)
    AttentionMaskInterface.register(SCORES_ATTENTION, eager_mask)


def use_scores_attention(model: torch.nn.Module) -> None:
    """Switch a (possibly wrapped) model to :data:`SCORES_ATTENTION`: with
    ``output_attentions=True`` its ``attentions`` are then unmasked scaled scores."""
    register_scores_attention()
    unwrap(model).set_attn_implementation(SCORES_ATTENTION)
