"""The forward pass every part of the library shares: unwrapping a model, hidden states without
full logits, teacher-forced response log-probabilities, and the EOS / pad ids of a model.

Trainers, loops, reward models, samplers and embedders all go through these functions, so a
DDP-, accelerate- or peft-wrapped model behaves the same everywhere.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor
from transformers import PreTrainedModel

CHUNK_ELEMENTS = 2**24  # fp32 elements of one (rows, V) logits block: 64 MiB


def unwrap(model: torch.nn.Module) -> PreTrainedModel:
    """The underlying HF model of a DDP-, accelerate- or peft-wrapped one."""
    while hasattr(model, "module"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def peft_wrapper(model: torch.nn.Module):
    """The peft wrapper of a (possibly DDP-wrapped) LoRA model, else None: adapters are saved
    and loaded through it, everything else through `unwrap`."""
    while hasattr(model, "module"):
        model = model.module
    return model if hasattr(model, "peft_config") else None


def backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The transformer body of a (possibly wrapped) causal LM or reward model: the submodule
    named by `base_model_prefix`, or the model itself when it already is the body."""
    base = unwrap(model)
    body = getattr(base, getattr(base, "base_model_prefix", ""), None)
    return body if isinstance(body, torch.nn.Module) else base


def eos_id(tokenizer, model: torch.nn.Module | None = None) -> int:
    """The EOS id that ends a response: the tokenizer's, else the model config's."""
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None and model is not None:
        eos = unwrap(model).config.eos_token_id
    if isinstance(eos, list):
        eos = eos[0]
    if eos is None:
        raise ValueError("no EOS token id in the tokenizer or the model config")
    return int(eos)


def pad_id(tokenizer, model: torch.nn.Module | None = None) -> int:
    """The id that pads re-collated rows (never read: padding is masked); EOS when the tokenizer
    has no pad token, as `load_tokenizer` sets it."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(pad) if pad is not None else eos_id(tokenizer, model)


def chunk_rows(chunk_tokens: int | None, model: torch.nn.Module, blocks: int = 1) -> int:
    """Rows per vocabulary chunk: the config's value, or (None) as many as keep the ``blocks``
    fp32 (rows, V) blocks a pass holds at once within `CHUNK_ELEMENTS`, so memory does not grow
    with the vocabulary."""
    if chunk_tokens is not None:
        return chunk_tokens
    vocab = unwrap(model).get_output_embeddings().weight.shape[0]
    return max(1, CHUNK_ELEMENTS // (vocab * blocks))


def hidden_and_head(model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor):
    """Final hidden states (B, L, d) and the output head, without a (B, L, V) logits tensor.

    The forward goes through the (possibly DDP-wrapped) model itself, asking for the logits of
    one position only, so distributed wrappers see a normal forward; a hook on the backbone
    captures its `last_hidden_state`, the exact input of the model's own head. The chunked head
    in `irlalign.losses.ops.token_stats` then recomputes logits block by block.
    """
    hidden, head, _ = forward_hidden(model, input_ids, attention_mask)
    return hidden, head


def response_logps(
    model: torch.nn.Module,
    ids: Tensor,
    am: Tensor,
    cm: Tensor,
    chunk_tokens: int | None = None,
    temperature: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Teacher-forced log π(a_t|s_t) (B, L − 1), zero outside the response, and the final hidden
    states (B, L, d); the head runs in vocabulary chunks, never a (B, L, V) logits tensor. With
    ``temperature`` T the distribution is softmax(logits / T), the one a sampler at T draws from."""
    from irlalign.losses import causal_logps

    hidden, head = hidden_and_head(model, ids, am)
    if temperature != 1.0:
        unscaled = head

        def head(h: Tensor) -> Tensor:
            return unscaled(h) / temperature

    logp, mask = causal_logps(hidden, ids, cm, head, chunk_tokens=chunk_rows(chunk_tokens, model))
    return torch.where(mask, logp, torch.zeros_like(logp)), hidden


def forward_hidden(
    model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor, attentions: bool = False
) -> tuple[Tensor, Callable[[Tensor], Tensor], Tensor | None]:
    """`hidden_and_head` plus, with ``attentions=True``, the last layer's attention output
    (B, H, L, L): post-softmax weights under eager attention, unmasked scaled scores under
    `irlalign.modeling.attention.SCORES_ATTENTION`."""
    base = unwrap(model)
    body = getattr(base, base.base_model_prefix, None)
    if body is None or body is base:
        raise ValueError(f"{type(base).__name__}: cannot find the backbone to read hidden states")
    captured: dict[str, Tensor] = {}

    def grab(_module, _args, output) -> None:
        captured["h"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

    handle = body.register_forward_hook(grab)
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if attentions:
        kwargs["output_attentions"] = True
    try:
        try:
            out = model(**kwargs, logits_to_keep=1)
        except TypeError:
            warnings.warn(
                f"{type(base).__name__} does not accept logits_to_keep; computing full logits",
                stacklevel=2,
            )
            out = model(**kwargs)
    finally:
        handle.remove()
    attn = None
    if attentions:
        if not out.attentions or out.attentions[-1] is None:
            raise ValueError(
                f"{type(base).__name__} returned no attention weights; reward weights need an "
                "attention implementation that returns them (the AVA trainer and reward-model "
                "loader set one; eager for rwt attn_causal)"
            )
        attn = out.attentions[-1]
    return captured["h"], output_head(base), attn


def _fsdp_unit_held_whole(head: torch.nn.Module) -> bool:
    """An FSDP2 unit whose weight is gathered (not a DTensor) outside its forward: calling the
    module again after the model's forward would register the unit's backward hooks twice."""
    try:
        from torch.distributed.fsdp import FSDPModule
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch build without distributed support
        return False
    return isinstance(head, FSDPModule) and not isinstance(head.weight, DTensor)


def output_head(base: PreTrainedModel) -> Callable[[Tensor], Tensor]:
    """The model's own logits head, soft-capping included (Gemma-2 style models). A head that
    FSDP keeps whole after the forward (accelerate's layout: final norm and head in one unit) is
    applied through its weight."""
    head = base.get_output_embeddings()
    if _fsdp_unit_held_whole(head):
        module = head

        def head(h: Tensor) -> Tensor:
            return torch.nn.functional.linear(h, module.weight, module.bias)

    cap = getattr(base.config, "final_logit_softcapping", None)
    if cap:
        linear = head

        def head(h: Tensor) -> Tensor:
            return cap * torch.tanh(linear(h) / cap)

    return head
