"""What the Hugging Face `Trainer` subclasses share: metric plumbing, the `metrics.jsonl`
writer, the normaliser rules of HF `Trainer` and preference pairs in one forward pass.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor
from transformers import Trainer, TrainerCallback

from irlalign.data.collate import concat_preference_batch
from irlalign.guard import FiniteGuard, drop_grads, grad_norm
from irlalign.modeling.forward import pad_id


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


# TRL's evaluation names for the pairwise metrics, logged beside the library's own.
EVAL_ALIASES = {"rewards/accuracy": "accuracy", "rewards/margin": "rewards/margins"}


class MetricStore:
    """Collects per-step metric tensors from `compute_loss`; `log` drains their means.

    Training and evaluation steps fill separate buckets: an evaluation between two training logs
    must neither average the training steps into its `eval_` metrics nor leave its own values in
    the next training log.
    """

    def __init__(self) -> None:
        self._values: dict[str, list[float]] = defaultdict(list)
        self._eval: dict[str, list[float]] = defaultdict(list)
        self._in_eval = False

    def add(self, metrics: dict[str, Tensor | float]) -> None:
        bucket = self._eval if self._in_eval else self._values
        for key, value in metrics.items():
            bucket[key].append(float(value))

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Route `add` to the evaluation bucket (one `prediction_step`)."""
        self._in_eval = True
        try:
            yield
        finally:
            self._in_eval = False

    def drain(self, prefix: str = "") -> dict[str, float]:
        out = _means(self._values, prefix)
        self._values.clear()
        return out

    def drain_eval(self) -> dict[str, float]:
        means = _means(self._eval, "")
        self._eval.clear()
        means.update({new: means[old] for old, new in EVAL_ALIASES.items() if old in means})
        return {"eval_" + k: v for k, v in means.items()}

    def merge_into(self, logs: dict[str, float]) -> dict[str, float]:
        """`Trainer.log` hook: add the means since the last log (eval logs get `eval_` keys)."""
        if any(k.startswith("eval_") for k in logs):
            # transformers' own eval_loss (the mean over batches) wins over the metric copy
            logs.update({k: v for k, v in self.drain_eval().items() if k not in logs})
        else:
            logs.update(self.drain())
        return logs


def _means(values: dict[str, list[float]], prefix: str) -> dict[str, float]:
    return {prefix + k: sum(v) / len(v) for k, v in values.items() if v}


class MethodEvalMixin(Trainer):
    """Evaluation with the method's own loss: mix in before `Trainer` in subclasses that have a
    `metric_store` and a `compute_loss`.

    `Trainer.prediction_step` calls `compute_loss` only when the batch has labels (these
    trainers' batches have none) and otherwise calls `model(**inputs)`, which cannot take
    preference pairs and computes no loss. Here every held-out batch goes through `compute_loss`
    without gradients; its metrics reach the evaluation log as `eval_<name>` and the loss as
    transformers' `eval_loss`. No logits are returned: the metrics are the method's own, so
    `compute_metrics` has nothing to read.
    """

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager(), self.metric_store.evaluating():
            # num_items_in_batch=None: each batch's loss is its own mean, as in TRL's evaluation
            loss = self.compute_loss(model, inputs)
        return loss.detach().mean(), None, None

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        super().log(self.metric_store.merge_into(logs), *args, **kwargs)


class JsonlMetricsCallback(TrainerCallback):
    """Appends every log event to `<run>/metrics.jsonl` (the run-folder contract)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


class FiniteGradCallback(TrainerCallback):
    """The finite guard before every optimizer step: a NaN/inf gradient norm stops the run (or
    is skipped, within `skip_nonfinite_steps`) before the weights change."""

    def __init__(self, guard: FiniteGuard):
        self.guard = guard

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        params = [p for p in model.parameters() if p.requires_grad]
        if not self.guard.allows(grad_norm(params), state.global_step + 1):
            drop_grads(params)


def stack_pairs(trainer, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """(2B, L) tensors: rows [0, B) are the chosen responses, rows [B, 2B) the rejected ones."""
    return concat_preference_batch(inputs, pad_id(trainer.processing_class, trainer.model))
