"""AfD's IRL reward model: a binary sequence classifier (Sun & van der Schaar, arXiv 2405.15624).

A one-label `AutoModelForSequenceClassification` is trained with binary cross-entropy to tell the
positive class (π_SFT samples or demonstrations, label 1) from the negative one (π_init or current
policy samples, label 0); its logit is the reward. Rows are tokenised and pooled exactly as
`irlalign.modeling.reward.SequenceClassifierReward` scores them, so training and scoring match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel, Trainer, TrainingArguments

from irlalign.data.collate import pad_right, padded_length
from irlalign.losses import bce_discriminator_loss
from irlalign.trainers.common import JsonlMetricsCallback, MethodEvalMixin, MetricStore


@dataclass
class DiscriminatorConfig:
    label_smoothing: float = 0.0  # ε: BCE targets become (1 − ε)·y + ε/2

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


class DiscriminatorTrainer(MethodEvalMixin, Trainer):
    """`transformers.Trainer` with the BCE loss on a one-label classifier's logit.

    Batches carry ``input_ids``, ``attention_mask`` and a float ``label`` (see
    :class:`LabelledCollator`). The key is ``label``, not HF's ``labels``, so that `Trainer`
    does not count "items" for the loss (it would count label positions as tokens) and divides
    the batch-mean loss by the gradient-accumulation steps as usual. `evaluate` computes the
    same loss (`MethodEvalMixin`).
    """

    def __init__(self, *args, method: DiscriminatorConfig | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method = method or DiscriminatorConfig()
        self.metric_store = MetricStore()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # The same call as SequenceClassifierReward._score: HF pools at the last non-pad token.
        logits = (
            model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                use_cache=False,
            )
            .logits[:, 0]
            .float()
        )
        loss, metrics = bce_discriminator_loss(
            logits, inputs["label"].float(), label_smoothing=self.method.label_smoothing
        )
        self.metric_store.add(metrics)
        return (loss, {"loss": loss, "logits": logits}) if return_outputs else loss


@dataclass
class LabelledCollator:
    """Labelled rows → right-padded ``input_ids``, ``attention_mask`` (and ``completion_mask``
    when the rows still have it) of shape (B, T), plus ``label`` (B,) float.

    Like `CompletionCollator`, but ``completion_mask`` is optional: `Trainer` with
    ``remove_unused_columns=True`` drops it (no model argument has that name), and the
    discriminator does not need it.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        length = padded_length([len(f["input_ids"]) for f in features], self.pad_to_multiple_of)
        pads = {"input_ids": self.pad_token_id, "attention_mask": 0, "completion_mask": 0}
        batch = {
            name: pad_right([f[name] for f in features], pad, length)
            for name, pad in pads.items()
            if name in features[0]
        }
        batch["label"] = torch.tensor([float(f["label"]) for f in features])
        return batch


def labelled_dataset(
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    labels: Sequence[float],
    max_length: int | None = None,
) -> Dataset:
    """Tokenised discriminator rows: ``input_ids``, ``attention_mask``, ``completion_mask``,
    ``label`` (1 = positive class).

    Tokenised as `irlalign.modeling.reward.response_batches` does (prompt and response separately,
    plain-text prompt/completion format, EOS appended), so the trained classifier scores the exact
    token sequences it was trained on. ``max_length`` truncates as `Truncation` does (the prompt
    from the left, then the response on the right, which then loses its EOS); no row is dropped.
    """
    from irlalign.data.formats import DataFormat
    from irlalign.data.tokenize import Truncation, tokenize_rows

    if not len(prompts) == len(responses) == len(labels):
        raise ValueError("prompts, responses and labels must have the same length")
    if not prompts:
        raise ValueError("no rows to tokenise")
    rows = [
        {"prompt": p, "completion": r, "label": float(y)}
        for p, r, y in zip(prompts, responses, labels, strict=True)
    ]
    fmt = DataFormat("prompt_completion", conversational=False)
    features, _ = tokenize_rows(rows, tokenizer, fmt, Truncation(max_length))
    columns = ("input_ids", "attention_mask", "completion_mask", "label")
    return Dataset.from_dict({key: [f[key] for f in features] for key in columns})


def pooling_pad_id(model: PreTrainedModel, tokenizer) -> int:
    """The pad id batches are padded with, made the one HF's classifier pools by.

    HF pools at the last token that is not ``config.pad_token_id``; batches (here and in
    `response_batches`) are padded with the tokenizer's pad. If the two differ, every padded row
    would be scored at a pad token, so a missing config value is filled in and a conflict is an
    error. (With pad = EOS the appended EOS is skipped by that pooling, identically in training
    and scoring, so both read the same token.)
    """
    # 0 without a tokenizer pad, as `response_batches` pads (load_tokenizer always sets one).
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad
    elif model.config.pad_token_id != pad:
        raise ValueError(
            f"model.config.pad_token_id={model.config.pad_token_id} but the tokenizer pads with "
            f"{pad}: the classifier would pool padded rows at a pad token"
        )
    return pad


def train_discriminator(
    model: PreTrainedModel,
    tokenizer,
    dataset: Dataset,
    args: TrainingArguments,
    run_metrics_path: str | Path | None = None,
    method: DiscriminatorConfig | None = None,
) -> PreTrainedModel:
    """Train ``model`` (one-label sequence classifier) on a :func:`labelled_dataset` and return
    it. ``run_metrics_path``: where `metrics.jsonl` lines are appended (none written if None)."""
    pad = pooling_pad_id(model, tokenizer)
    callbacks = [JsonlMetricsCallback(run_metrics_path)] if run_metrics_path is not None else []
    trainer = DiscriminatorTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=LabelledCollator(pad),
        processing_class=tokenizer,
        callbacks=callbacks,
        method=method,
    )
    trainer.train()
    return trainer.model
