"""Preference Transformer reward model (Kim et al. 2023, ICLR): per-step rewards r_t combined by a
preference-attention layer into S(y) = Σ_t w_t r_t, trained with the Bradley–Terry loss on S.

The baseline of AVA's Table 1, on the same causal-LM backbone as AVA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Trainer

from irlalign.losses import bradley_terry_loss
from irlalign.modeling.forward import forward_hidden, unwrap
from irlalign.modeling.heads import PreferenceAttentionHead, attach_head, get_head
from irlalign.trainers.ava import freeze_untied_lm_head
from irlalign.trainers.common import MethodEvalMixin, MetricStore, stack_pairs
from irlalign.trainers.heads import HeadsCheckpointMixin
from irlalign.trainers.raw_rows import TextRowsMixin

PREFERENCE_HEAD = "preference"


@dataclass
class PreferenceTransformerConfig:
    margin: float = 0.0  # optional fixed margin inside the Bradley–Terry sigmoid

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError("margin must be >= 0")


def preference_scores(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """S(y) = Σ_t w_t r_t over the valid tokens of each row; (B,) fp32."""
    hidden, _, _ = forward_hidden(model, batch["input_ids"], batch["attention_mask"])
    w, r = get_head(model, PREFERENCE_HEAD)(hidden, batch["attention_mask"])
    return (w * r).sum(1)


class PreferenceTransformerTrainer(TextRowsMixin, HeadsCheckpointMixin, MethodEvalMixin, Trainer):
    """`transformers.Trainer` with the Bradley–Terry loss on preference-attention scores."""

    rows_kind = "preference"

    def __init__(self, *args, method: PreferenceTransformerConfig | None = None, **kwargs):
        self.method = method or PreferenceTransformerConfig()
        model = kwargs["model"] if "model" in kwargs else args[0]
        base = unwrap(model)
        attach_head(model, PREFERENCE_HEAD, PreferenceAttentionHead(base.config.hidden_size))
        freeze_untied_lm_head(base)
        super().__init__(*args, **kwargs)
        self.metric_store = MetricStore()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        both = stack_pairs(self, inputs)
        scores = preference_scores(model, both)
        half = inputs["chosen_input_ids"].shape[0]
        loss, metrics = bradley_terry_loss(scores[:half], scores[half:], margin=self.method.margin)
        self.metric_store.add(metrics)
        return (loss, {"loss": loss}) if return_outputs else loss
