"""Glue shared by the offline trainers: hidden states without full logits, metric plumbing,
the `metrics.jsonl` writer and the normaliser rules of HF `Trainer`.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from transformers import PreTrainedModel, TrainerCallback


def unwrap(model: torch.nn.Module) -> PreTrainedModel:
    """The underlying HF model of a DDP/accelerate/peft-wrapped one."""
    while hasattr(model, "module"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


CHUNK_ELEMENTS = 2**24  # fp32 elements of one (rows, V) logits block: 64 MiB


def chunk_rows(chunk_tokens: int | None, model: torch.nn.Module) -> int:
    """Rows per vocabulary chunk: the config's value, or (None) as many as keep one fp32
    (rows, V) block within `CHUNK_ELEMENTS`, so memory does not grow with the vocabulary."""
    if chunk_tokens is not None:
        return chunk_tokens
    vocab = unwrap(model).get_output_embeddings().weight.shape[0]
    return max(1, CHUNK_ELEMENTS // vocab)


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
    model: torch.nn.Module, ids: Tensor, am: Tensor, cm: Tensor, chunk_tokens: int | None = None
) -> tuple[Tensor, Tensor]:
    """Teacher-forced log π(a_t|s_t) (B, L − 1), zero outside the response, and the final hidden
    states (B, L, d); the head runs in vocabulary chunks, never a (B, L, V) logits tensor."""
    from irlalign.losses import causal_logps

    hidden, head = hidden_and_head(model, ids, am)
    logp, mask = causal_logps(hidden, ids, cm, head, chunk_tokens=chunk_rows(chunk_tokens, model))
    return torch.where(mask, logp, torch.zeros_like(logp)), hidden


def forward_hidden(
    model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor, attentions: bool = False
) -> tuple[Tensor, Callable[[Tensor], Tensor], Tensor | None]:
    """`hidden_and_head` plus, with ``attentions=True``, the last layer's post-softmax
    self-attention (B, H, L, L) (needs an eager attention implementation)."""
    base = unwrap(model)
    backbone = getattr(base, base.base_model_prefix, None)
    if backbone is None or backbone is base:
        raise ValueError(f"{type(base).__name__}: cannot find the backbone to read hidden states")
    captured: dict[str, Tensor] = {}

    def grab(_module, _args, output) -> None:
        captured["h"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

    handle = backbone.register_forward_hook(grab)
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
                f"{type(base).__name__} returned no attention weights; load it with "
                'attn_implementation="eager" (model.extra) to use reward weights (rwt="attn")'
            )
        attn = out.attentions[-1]
    return captured["h"], _output_head(base), attn


def _output_head(base: PreTrainedModel) -> Callable[[Tensor], Tensor]:
    head = base.get_output_embeddings()
    cap = getattr(base.config, "final_logit_softcapping", None)
    if cap:  # Gemma-2 style soft-capping is part of the model's logits
        linear = head

        def head(h: Tensor) -> Tensor:
            return cap * torch.tanh(linear(h) / cap)

    return head


def token_normaliser(trainer, num_items_in_batch, completion_mask: Tensor):
    """Normaliser N for token-level losses and the factor HF expects the loss to carry.

    With `num_items_in_batch` (the response-token count of all gradient-accumulation micro-batches,
    summed over processes when `average_tokens_across_devices`), every micro-batch divides by the
    same N, so gradient accumulation and multi-process training give the full-batch gradient;
    DDP averages over processes, hence the multiplication by their number.
    """
    if num_items_in_batch is None:
        return None, 1.0
    scale = 1.0
    if trainer.args.average_tokens_across_devices and trainer.accelerator.num_processes > 1:
        scale = float(trainer.accelerator.num_processes)
    return num_items_in_batch, scale


class MetricStore:
    """Collects per-step metric tensors from `compute_loss`; `log` drains their means."""

    def __init__(self) -> None:
        self._values: dict[str, list[float]] = defaultdict(list)

    def add(self, metrics: dict[str, Tensor | float]) -> None:
        for key, value in metrics.items():
            self._values[key].append(float(value))

    def drain(self, prefix: str = "") -> dict[str, float]:
        out = {prefix + k: sum(v) / len(v) for k, v in self._values.items() if v}
        self._values.clear()
        return out

    def merge_into(self, logs: dict[str, float]) -> dict[str, float]:
        """`Trainer.log` hook: add the means since the last log (eval logs get `eval_` keys)."""
        prefix = "eval_" if any(k.startswith("eval_") for k in logs) else ""
        logs.update(self.drain(prefix))
        return logs


class JsonlMetricsCallback(TrainerCallback):
    """Appends every log event to `<run>/metrics.jsonl` (rule 7 of the architecture)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


def with_labels(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Add HF-style `labels` (−100 outside the completion) so `Trainer` counts the tokens of
    a gradient-accumulation step for us (`num_items_in_batch`)."""
    batch["labels"] = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    return batch


def collator_for(data_kind: str, pad_id: int):
    """Right-padding collator for tokenised demonstrations (with HF `labels`) or pairs."""
    from irlalign.data.collate import CompletionCollator, PreferenceCollator

    if data_kind == "preference":
        return PreferenceCollator(pad_id)
    completion = CompletionCollator(pad_id)
    return lambda features: with_labels(completion(features))
