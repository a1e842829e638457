"""SFT (MLE) and MLE with an entropy bonus (the baselines of Wulfmeier et al. 2024)."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import Trainer

from irlalign.losses import causal_logps, sft_entropy_loss, sft_loss
from irlalign.losses.fused import can_fuse
from irlalign.losses.fused_losses import fused_sft_loss
from irlalign.modeling.forward import chunk_rows, hidden_and_head
from irlalign.trainers.common import MethodEvalMixin, MetricStore, token_normaliser
from irlalign.trainers.raw_rows import TextRowsMixin


@dataclass
class SFTConfig:
    entropy_beta: float = 0.0  # β of L_MLE+H; 0 = plain MLE
    chunk_tokens: int | None = None  # rows per vocabulary chunk; None: sized by V (chunk_rows)
    # the head's gradient computed inside the forward chunk (3 vocabulary products instead of 4);
    # used when the head is a plain Linear, else (or false) the checkpointed chunks: same numbers
    fused_head: bool = True

    def __post_init__(self) -> None:
        if self.entropy_beta < 0:
            raise ValueError("entropy_beta must be >= 0 (entropy is rewarded)")
        if self.chunk_tokens is not None and self.chunk_tokens < 1:
            raise ValueError("chunk_tokens must be >= 1 or None")


class SFTTrainer(TextRowsMixin, MethodEvalMixin, Trainer):
    """`transformers.Trainer` with the chunked fp32 MLE loss over response tokens only."""

    def __init__(self, *args, method: SFTConfig | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method = method or SFTConfig()
        self.metric_store = MetricStore()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        hidden, head = hidden_and_head(model, inputs["input_ids"], inputs["attention_mask"])
        cfg = self.method
        n, scale = token_normaliser(self, num_items_in_batch, inputs["completion_mask"])
        if cfg.fused_head and can_fuse(head):
            loss, metrics = fused_sft_loss(
                hidden,
                inputs["input_ids"],
                inputs["completion_mask"],
                head,
                entropy_beta=cfg.entropy_beta,
                num_items=n,
                chunk_tokens=chunk_rows(cfg.chunk_tokens, model),
            )
            self.metric_store.add(metrics)
            loss = loss * scale
            return (loss, {"loss": loss}) if return_outputs else loss
        with_entropy = cfg.entropy_beta > 0
        stats = causal_logps(
            hidden,
            inputs["input_ids"],
            inputs["completion_mask"],
            head,
            chunk_tokens=chunk_rows(cfg.chunk_tokens, model),
            with_entropy=with_entropy,
        )
        if with_entropy:
            loss, metrics = sft_entropy_loss(
                stats[0], stats[2], stats[1], beta=cfg.entropy_beta, num_items=n
            )
        else:
            loss, metrics = sft_loss(stats[0], stats[1], num_items=n)
        self.metric_store.add(metrics)
        loss = loss * scale
        return (loss, {"loss": loss}) if return_outputs else loss
