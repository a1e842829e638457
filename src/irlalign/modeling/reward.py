"""The library's reward-model interface and its loader.

Consumers (evaluation now; RL and best-of-N later) depend only on `RewardModel.score`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer


@runtime_checkable
class RewardModel(Protocol):
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """One scalar per (prompt, response) pair, higher = better."""
        ...


class SequenceClassifierReward:
    """A Hugging Face sequence-classification model with one label, read as a scalar reward."""

    def __init__(self, model, tokenizer, batch_size: int = 64, separator: str = " "):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_size, self.separator = batch_size, separator

    @torch.no_grad()
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses must have the same length")
        texts = [p + self.separator + r for p, r in zip(prompts, responses, strict=True)]
        self.tokenizer.padding_side = "right"
        out = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[start : start + self.batch_size],
                add_special_tokens=False,
                padding=True,
                return_tensors="pt",
            ).to(self.model.device)
            out.append(self.model(**enc).logits[:, 0].float().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0)


def load_reward_model(path: str | Path) -> RewardModel:
    """Load a reward-model folder: a sequence classifier with `num_labels == 1`."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: no config.json; not a reward-model folder")
    config = AutoConfig.from_pretrained(path)
    if getattr(config, "num_labels", None) != 1:
        raise ValueError(
            f"{path}: expected a sequence-classification reward model with num_labels=1, "
            f"got architectures={config.architectures} num_labels={config.num_labels}"
        )
    model = AutoModelForSequenceClassification.from_pretrained(path)
    return SequenceClassifierReward(model, AutoTokenizer.from_pretrained(path))
