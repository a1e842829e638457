"""Offline IQLearn: inverse soft-Q learning as TD-regularised MLE.

Wulfmeier et al. 2024, *Imitating Language via Scalable Inverse Reinforcement Learning*,
Eq. (14); decisions and defaults from specs/iqlearn.md §0. Q = the LM's logits, V = logsumexp.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import Trainer

from irlalign.losses import iq_terms, iqlearn_offline_loss, sequence_rewards
from irlalign.modeling.heads import ScalarHead, attach_head, get_head
from irlalign.trainers.common import (
    MetricStore,
    chunk_rows,
    hidden_and_head,
    token_normaliser,
    unwrap,
)
from irlalign.trainers.heads import HeadsCheckpointMixin

TRUNCATION_MODES = ("bootstrap", "drop")
VALUE_HEAD = "value"  # name of the value-head ablation's head in checkpoints


@dataclass
class IQLearnConfig:
    lam: float = 0.1  # λ, TD-regulariser weight; 0 => exactly SFT
    gamma: float = 1.0  # γ
    truncation: str = "bootstrap"  # or "drop": the last TD term of a response with no EOS
    tau: float = 1.0  # soft-value temperature; Eq. (14) implies 1 (other values: an ablation)
    chunk_tokens: int | None = None  # rows per vocabulary chunk; None: sized by V (chunk_rows)
    online: bool = False  # the online variant needs the sampling stack (issue 5)
    value_head: bool = False  # ablation (spec §2.5): scalar V_φ head instead of LSE(logits)

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise ValueError("lam must be >= 0")
        if not 0 < self.gamma <= 1:
            raise ValueError("gamma must be in (0, 1]")
        if self.truncation not in TRUNCATION_MODES:
            raise ValueError(f"truncation must be one of {TRUNCATION_MODES}")
        if self.chunk_tokens is not None and self.chunk_tokens < 1:
            raise ValueError("chunk_tokens must be >= 1 or None")
        if self.tau <= 0:
            raise ValueError("tau must be > 0")
        if self.value_head and self.tau != 1.0:
            raise ValueError("value_head and tau != 1 are separate ablations; set one")
        if self.online:
            raise ValueError("online IQLearn is not available yet; use online: false")


class IQLearnTrainer(HeadsCheckpointMixin, Trainer):
    """`transformers.Trainer` whose loss is Eq. (14) on expert (demonstration) tokens."""

    def __init__(self, *args, method: IQLearnConfig | None = None, **kwargs):
        self.method = method or IQLearnConfig()
        if self.method.value_head:
            # Before Trainer.__init__, so the head is moved, wrapped and optimised with the model.
            model = kwargs["model"] if "model" in kwargs else args[0]
            attach_head(model, VALUE_HEAD, ScalarHead(unwrap(model).config.hidden_size))
        super().__init__(*args, **kwargs)
        self.metric_store = MetricStore()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        cfg = self.method
        hidden, head = hidden_and_head(model, inputs["input_ids"], inputs["attention_mask"])
        eos_id = unwrap_eos(self)
        terms = iq_terms(
            hidden,
            inputs["input_ids"],
            inputs["completion_mask"],
            head,
            eos_id=eos_id,
            gamma=cfg.gamma,
            drop_truncated=cfg.truncation == "drop",
            chunk_tokens=chunk_rows(cfg.chunk_tokens, model),
            tau=cfg.tau,
            value_fn=get_head(model, VALUE_HEAD) if cfg.value_head else None,
        )
        n, scale = token_normaliser(self, num_items_in_batch, inputs["completion_mask"])
        loss, metrics = iqlearn_offline_loss(
            terms.logp, terms.r_hat, terms.mask, terms.td_mask, lam=cfg.lam, num_items=n
        )
        seq = sequence_rewards(terms.logp, terms.r_hat, terms.v, terms.mask, gamma=cfg.gamma)
        metrics["iq/v0"] = seq["v0"].mean().detach()
        metrics["iq/truncated"] = terms.truncated.any(1).float().mean()
        self.metric_store.add(metrics)
        loss = loss * scale
        return (loss, {"loss": loss}) if return_outputs else loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        super().log(self.metric_store.merge_into(logs), *args, **kwargs)


def unwrap_eos(trainer: Trainer) -> int:
    """The EOS id that ends a response: the tokenizer's, else the model config's."""
    tok = trainer.processing_class
    eos = getattr(tok, "eos_token_id", None)
    if eos is None:
        eos = trainer.model.config.eos_token_id
    if isinstance(eos, list):
        eos = eos[0]
    if eos is None:
        raise ValueError("IQLearn needs an EOS token id (tokenizer or model config)")
    return int(eos)
