"""What the Hugging Face `Trainer` subclasses share: metric plumbing, the `metrics.jsonl`
writer, the normaliser rules of HF `Trainer` and preference pairs in one forward pass.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
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
    store = getattr(trainer, "metric_store", None)
    if num_items_in_batch is None:
        if store is not None:
            store.token_scale = None
        return None, 1.0
    scale = 1.0
    if trainer.args.average_tokens_across_devices and trainer.accelerator.num_processes > 1:
        scale = float(trainer.accelerator.num_processes)
    if store is not None:  # this micro-batch's loss metrics are shares of N (`MetricStore`)
        store.token_scale = scale
    return num_items_in_batch, scale


# TRL's evaluation names for the pairwise metrics, logged beside the library's own.
EVAL_ALIASES = {"rewards/accuracy": "accuracy", "rewards/margin": "rewards/margins"}


# Metrics that the token-level losses (SFT, IQLearn) divide by the token count N of the whole
# optimizer step (all gradient-accumulation micro-batches, and all processes under
# `average_tokens_across_devices`) when transformers passes `num_items_in_batch`: each
# micro-batch's value is its share of the step's value, which is their sum.
TOKEN_SHARES = frozenset({"loss/total", "loss/mle", "loss/td", "policy/entropy", "iq/value_expert"})

# (sum, count) of a mean metric, or (sum of scaled shares, 0) of a token share, per key.
Sums = dict[str, tuple[float, int]]


class MetricStore:
    """Collects per-step metric tensors from `compute_loss`; `log` drains them, aggregated as
    transformers aggregates its `loss`, so that under gradient accumulation and several
    processes `loss/total` is the logged `loss`:

    - a token share (a `TOKEN_SHARES` key of a micro-batch for which `token_normaliser` set
      ``token_scale``) is multiplied by that scale (the number of processes whose tokens N
      counts), summed over the micro-batches of a process, averaged over processes and divided
      by the optimizer steps since the last log;
    - any other metric is the mean of its values over micro-batches and processes.

    The processes' sums meet in one collective per log call (``gather``), not per micro-batch.
    Training and evaluation steps fill separate buckets: an evaluation between two training logs
    must neither average the training steps into its `eval_` metrics nor leave its own values in
    the next training log.
    """

    def __init__(self) -> None:
        self._values: dict[str, list[float]] = defaultdict(list)
        self._shares: dict[str, float] = defaultdict(float)
        self._eval: dict[str, list[float]] = defaultdict(list)
        self._steps: set[int] = set()
        self._in_eval = False
        self.token_scale: float | None = None  # set per micro-batch by `token_normaliser`
        self.step = 0  # the optimizer step the next training values belong to

    def add(self, metrics: dict[str, Tensor | float]) -> None:
        if self._in_eval:
            for key, value in metrics.items():
                self._eval[key].append(float(value))
            return
        self._steps.add(self.step)
        for key, value in metrics.items():
            if self.token_scale is not None and key in TOKEN_SHARES:
                self._shares[key] += float(value) * self.token_scale
            else:
                self._values[key].append(float(value))

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Route `add` to the evaluation bucket (one `prediction_step`)."""
        self._in_eval = True
        try:
            yield
        finally:
            self._in_eval = False

    def drain(self, prefix: str = "", gather: Gather | None = None) -> dict[str, float]:
        sums = _sums(self._values)
        sums.update({k: (v, 0) for k, v in self._shares.items()})
        steps = max(1, len(self._steps))
        self._values.clear()
        self._shares.clear()
        self._steps.clear()
        return _aggregate(sums, steps, prefix, gather)

    def drain_eval(self, gather: Gather | None = None) -> dict[str, float]:
        means = _aggregate(_sums(self._eval), 1, "", gather)
        self._eval.clear()
        means.update({new: means[old] for old, new in EVAL_ALIASES.items() if old in means})
        return {"eval_" + k: v for k, v in means.items()}

    def merge_into(self, logs: dict[str, float], gather: Gather | None = None) -> dict[str, float]:
        """`Trainer.log` hook: add the metrics since the last log (eval logs get `eval_` keys);
        ``gather`` (every process calls it once) collects all processes' sums."""
        if any(k.startswith("eval_") for k in logs):
            # transformers' own eval_loss (the mean over batches) wins over the metric copy
            logs.update({k: v for k, v in self.drain_eval(gather).items() if k not in logs})
        else:
            logs.update(self.drain(gather=gather))
        return logs


Gather = Callable[[Sums], list[Sums]]


def _sums(values: dict[str, list[float]]) -> Sums:
    return {k: (sum(v), len(v)) for k, v in values.items() if v}


def _aggregate(sums: Sums, steps: int, prefix: str, gather: Gather | None) -> dict[str, float]:
    """Means of mean metrics over all values of all processes; token shares summed within a
    process, averaged over processes, per optimizer step."""
    parts = gather(sums) if gather is not None else [sums]
    out: dict[str, float] = {}
    for key in sorted({k for part in parts for k in part}):
        mine = [part[key] for part in parts if key in part]
        total, count = sum(s for s, _ in mine), sum(c for _, c in mine)
        out[prefix + key] = total / count if count else total / (len(mine) * steps)
    return out


def gather_objects(sums: Sums) -> list[Sums]:
    """Every process's ``sums`` (one `all_gather_object`); just ours in a single process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [sums]
    out: list[Sums] = [{} for _ in range(dist.get_world_size())]
    dist.all_gather_object(out, sums)
    return out


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

    def training_step(self, model, inputs, *args, **kwargs):
        # Token shares add up per optimizer step; the store counts the steps it saw.
        self.metric_store.step = self.state.global_step
        return super().training_step(model, inputs, *args, **kwargs)

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        # Every process logs (only the main one writes): the store's one collective per log.
        merged = self.metric_store.merge_into(logs, gather_objects)
        super().log(merged, *args, **kwargs)


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
