"""Attention implementations that hand back the last layer's attention for AVA's reward weights.

AVA's reward weights (Cai et al. 2024, Eq. 11) read the last layer's attention only. Asking a
model for ``output_attentions`` under eager attention materialises every layer's (B, H, L, L)
weights and gives up the fused SDPA kernels everywhere; the implementations here run every layer
with SDPA (the model's outputs are unchanged up to kernel rounding) and, in the last layer only,
rebuild from the layer's own queries and keys what the weights need:

- :data:`SCORES_ATTENTION` (``rwt="attn_full"``, a softmax over *all* response positions, later
  ones included): the scaled scores q_i·k_t·c (B, H, L, L) with no mask applied; c is the layer's
  own scaling (1/√d_head for most models; soft-capping, where a model has it, is not applied).
- :data:`CAUSAL_WEIGHTS_ATTENTION` (``rwt="attn_causal"``): the post-softmax causal, padding-masked
  weights, the tensor eager attention returns.

Grouped-query keys are repeated to the query heads. Other layers return no attention, so
``outputs.attentions[-1]`` is the tensor to read.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

from irlalign.modeling.forward import unwrap

SCORES_ATTENTION = "irlalign_sdpa_last_scores"
CAUSAL_WEIGHTS_ATTENTION = "irlalign_sdpa_last_weights"


def _is_last_layer(module: torch.nn.Module) -> bool:
    idx = getattr(module, "layer_idx", None)
    layers = getattr(getattr(module, "config", None), "num_hidden_layers", None)
    # a module that does not know its index is treated as the last: correct, only slower
    return idx is None or layers is None or idx == layers - 1


def _scores(module: torch.nn.Module, query: Tensor, key: Tensor, scaling: float | None) -> Tensor:
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    keys = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    return query @ keys.transpose(-1, -2) * scale


def _allowed(mask: Tensor | None, q_len: int, k_len: int, device) -> Tensor:
    """Which keys each query may attend to, as a bool (…, q, k) tensor, from whatever mask the
    SDPA mask builder produced: None (plain causal), bool (True = attend) or additive floats."""
    if mask is None:
        return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)
    if mask.dtype == torch.bool:
        return mask
    return mask == 0


def _sdpa(module, query, key, value, attention_mask, scaling, dropout, kwargs) -> Tensor:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    kwargs.pop("output_attentions", None)  # asked for by the caller; this function answers it
    if kwargs.get("softcap") is not None:  # SDPA has no soft-capping: the model's own eager
        eager = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
        if eager is not None:
            return eager(module, query, key, value, attention_mask, scaling=scaling, **kwargs)[0]
    out, _ = sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )
    return out


def _sdpa_with_last_scores(
    module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs
):
    out = _sdpa(module, query, key, value, attention_mask, scaling, dropout, kwargs)
    return out, (_scores(module, query, key, scaling) if _is_last_layer(module) else None)


def _sdpa_with_last_weights(
    module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs
):
    out = _sdpa(module, query, key, value, attention_mask, scaling, dropout, kwargs)
    if not _is_last_layer(module):
        return out, None
    s = _scores(module, query, key, scaling)
    allowed = _allowed(attention_mask, s.shape[-2], s.shape[-1], s.device)
    s = s.float().masked_fill(~allowed, torch.finfo(torch.float32).min)
    return out, s.softmax(-1).to(query.dtype)


def register_attention() -> None:
    """Make both implementations known to transformers (idempotent); masks as SDPA's."""
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(SCORES_ATTENTION, _sdpa_with_last_scores)
    AttentionInterface.register(CAUSAL_WEIGHTS_ATTENTION, _sdpa_with_last_weights)
    AttentionMaskInterface.register(SCORES_ATTENTION, sdpa_mask)
    AttentionMaskInterface.register(CAUSAL_WEIGHTS_ATTENTION, sdpa_mask)


def use_scores_attention(model: torch.nn.Module) -> None:
    """Switch a (possibly wrapped) model to :data:`SCORES_ATTENTION`: with
    ``output_attentions=True`` its last ``attentions`` entry holds unmasked scaled scores."""
    register_attention()
    unwrap(model).set_attn_implementation(SCORES_ATTENTION)


def use_causal_weights_attention(model: torch.nn.Module) -> None:
    """Switch a (possibly wrapped) model to :data:`CAUSAL_WEIGHTS_ATTENTION`: with
    ``output_attentions=True`` its last ``attentions`` entry holds the causal attention weights."""
    register_attention()
    unwrap(model).set_attn_implementation(CAUSAL_WEIGHTS_ATTENTION)
