"""Bradley–Terry reward model (Bradley & Terry 1952; Ouyang et al. 2022, Eq. 1): a sequence
classifier with one output trained on (chosen, rejected) pairs."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import Trainer

from irlalign.losses import bradley_terry_loss
from irlalign.trainers.common import MethodEvalMixin, MetricStore, stack_pairs
from irlalign.trainers.raw_rows import TextRowsMixin


@dataclass
class RewardConfig:
    margin: float = 0.0  # optional fixed margin inside the sigmoid

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError("margin must be >= 0")


class RewardTrainer(TextRowsMixin, MethodEvalMixin, Trainer):
    """`transformers.Trainer` with the Bradley–Terry loss on the scalar head's scores."""

    rows_kind = "preference"

    def __init__(self, *args, method: RewardConfig | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method = method or RewardConfig()
        self.metric_store = MetricStore()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        both = stack_pairs(self, inputs)
        scores = (
            model(
                input_ids=both["input_ids"], attention_mask=both["attention_mask"], use_cache=False
            )
            .logits[:, 0]
            .float()
        )
        half = inputs["chosen_input_ids"].shape[0]
        loss, metrics = bradley_terry_loss(scores[:half], scores[half:], margin=self.method.margin)
        self.metric_store.add(metrics)
        return (loss, {"loss": loss}) if return_outputs else loss
