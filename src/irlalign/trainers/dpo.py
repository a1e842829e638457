"""Direct Preference Optimisation (Rafailov et al. 2023, Eq. 7), sigmoid loss with optional
conservative label smoothing, against a frozen reference policy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Trainer

from irlalign.losses import causal_logps, dpo_loss
from irlalign.modeling.forward import chunk_rows, hidden_and_head
from irlalign.trainers.common import MethodEvalMixin, MetricStore, stack_pairs
from irlalign.trainers.raw_rows import TextRowsMixin


@dataclass
class DPOConfig:
    beta: float = 0.1
    label_smoothing: float = 0.0
    chunk_tokens: int | None = None  # rows per vocabulary chunk; None: sized by V (chunk_rows)

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ValueError("beta must be > 0")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError("label_smoothing must be in [0, 0.5)")


def sequence_logps(model, batch, chunk_tokens: int | None) -> torch.Tensor:
    """log π(y|x) per row: the sum of response-token log-probs (B,)."""
    hidden, head = hidden_and_head(model, batch["input_ids"], batch["attention_mask"])
    logp, mask = causal_logps(
        hidden,
        batch["input_ids"],
        batch["completion_mask"],
        head,
        chunk_tokens=chunk_rows(chunk_tokens, model),
    )
    return torch.where(mask, logp, torch.zeros_like(logp)).sum(1)


class DPOTrainer(TextRowsMixin, MethodEvalMixin, Trainer):
    """`transformers.Trainer` with the DPO loss; `ref_model` is frozen and never saved."""

    rows_kind = "preference"

    def __init__(self, *args, ref_model=None, method: DPOConfig | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if ref_model is None:
            raise ValueError("DPO needs a reference model (ref_model=...)")
        self.ref_model = ref_model.eval().to(self.args.device)
        for p in self.ref_model.parameters():
            p.requires_grad_(False)
        self.method = method or DPOConfig()
        self.metric_store = MetricStore()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        both = stack_pairs(self, inputs)
        half = inputs["chosen_input_ids"].shape[0]
        logps = sequence_logps(model, both, self.method.chunk_tokens)
        with torch.no_grad():
            ref = sequence_logps(self.ref_model, both, self.method.chunk_tokens)
        loss, metrics = dpo_loss(
            logps[:half],
            logps[half:],
            ref[:half],
            ref[half:],
            beta=self.method.beta,
            label_smoothing=self.method.label_smoothing,
        )
        self.metric_store.add(metrics)
        return (loss, {"loss": loss}) if return_outputs else loss
