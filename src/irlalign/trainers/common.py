"""What the Hugging Face `Trainer` subclasses share: metric plumbing, the `metrics.jsonl`
writer, the normaliser rules of HF `Trainer` and preference pairs in one forward pass.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from torch import Tensor
from transformers import TrainerCallback

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
