"""The finite-or-stop rule every trainer and loop applies before an optimizer step.

A non-finite gradient norm (from a NaN/inf loss or an overflowing backward) would write NaN into
every weight, and every later checkpoint and the final model would be NaN while the run "succeeds".
The guard stops the run before that update instead, so the weights on disk stay finite, or skips
a bounded number of such steps (gradients dropped, weights untouched) when the user allows it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class NonFiniteError(RuntimeError):
    """Training stopped because a loss or gradient was NaN or infinite."""


class FiniteGuard:
    """Counts non-finite steps; allows ``skips`` of them (gradients dropped), then raises."""

    def __init__(self, skips: int = 0, where: str = "") -> None:
        if skips < 0:
            raise ValueError("training.skip_nonfinite_steps must be >= 0")
        self.skips, self.skipped, self.where = skips, 0, where

    def allows(self, grad_norm: float, step: int) -> bool:
        """True when the update may proceed; False when it must be skipped; raises past the
        allowance. ``step`` is the 1-based step the update would complete."""
        if math.isfinite(grad_norm):
            return True
        self.skipped += 1
        if self.skipped > self.skips:
            hint = "lower training.learning_rate"
            if self.skips == 0:
                hint += " or allow skipped steps with training.skip_nonfinite_steps"
            raise NonFiniteError(
                f"step {step}: non-finite gradient norm ({grad_norm}); stopped before updating "
                f"the weights, so every checkpoint{self.where} holds finite weights; {hint}"
            )
        print(f"step {step}: non-finite gradient norm, skipped ({self.skipped}/{self.skips})")
        return False


def grad_norm(params: Iterable[torch.nn.Parameter]) -> float:
    """The total 2-norm of the gradients that exist (0.0 when there are none)."""
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads])))


def drop_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """Forget the gradients, so the optimizer leaves every parameter as it is."""
    for p in params:
        p.grad = None
