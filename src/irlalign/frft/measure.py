"""What FRFT measures each round.

- Reward-model accuracy on stored preference pairs, against the labels (chosen scored above
  rejected) and, when the data carries the true returns, against the true ordering (the
  synthetic labels are Bradley–Terry draws, so some labels disagree with the truth).
- The **premise metric**: accuracy against the true return on pairs of the frozen policy's own
  samples (two samples of one prompt, ordered by the gold reward). FRFT's premise is that the
  refit RM judges the current policy's outputs better than the pooled RM; this measures it
  directly, on synthetic tasks, where the gold reward is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irlalign.eval.metrics import pairwise_accuracy
from irlalign.frft.pool import PreferencePool


@dataclass
class PolicyPairs:
    """Two policy samples per prompt and their gold returns: (n,) prompts, (n, 2) the rest."""

    prompts: list[str]
    responses: list[tuple[str, str]]
    gold: np.ndarray

    @property
    def n_pairs(self) -> int:
        """Pairs the premise metric counts: those whose gold returns differ."""
        return int(np.sum(self.gold[:, 0] != self.gold[:, 1]))


def label_accuracy(chosen: np.ndarray, rejected: np.ndarray) -> float:
    """Fraction of pairs with r(chosen) > r(rejected) (nan for none)."""
    chosen, rejected = np.asarray(chosen), np.asarray(rejected)
    return float(np.mean(chosen > rejected)) if len(chosen) else float("nan")


def pair_accuracies(
    chosen: np.ndarray, rejected: np.ndarray, pool: PreferencePool, idx: Any
) -> dict[str, float | None]:
    """``labels``: accuracy against the labels; ``true``: against the true ordering (pairs with
    equal true returns skipped, a score tie counted 0.5; None when the pool has no truth)."""
    idx = np.asarray(list(idx), dtype=np.int64)
    out: dict[str, float | None] = {"labels": label_accuracy(chosen, rejected), "true": None}
    if pool.has_truth:
        out["true"] = (
            pairwise_accuracy(chosen, rejected, pool.chosen_true[idx], pool.rejected_true[idx])
            if len(idx)
            else float("nan")
        )
    return out


def premise_accuracy(scores: np.ndarray, gold: np.ndarray) -> float:
    """(n, 2) RM scores and gold returns of two samples per prompt → pairwise accuracy of the
    RM's order against the gold order (gold ties skipped, score ties 0.5; nan when all tie)."""
    scores, gold = np.asarray(scores, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if scores.shape != gold.shape or scores.ndim != 2 or scores.shape[1] != 2:
        raise ValueError(f"scores and gold must both be (n, 2), got {scores.shape}, {gold.shape}")
    return pairwise_accuracy(scores[:, 0], scores[:, 1], gold[:, 0], gold[:, 1])


def evaluate_rm(
    rm_path: str | Path,
    sets: dict[str, tuple[PreferencePool, Any]],
    pairs: PolicyPairs | None = None,
) -> dict[str, float | None]:
    """One RM, loaded once: ``accuracy_<name>`` and ``accuracy_<name>_true`` for every named
    (pool, indices) set, and ``premise`` on the policy pairs when given."""
    from irlalign.modeling.reward import load_reward_model

    rm = load_reward_model(rm_path)
    out: dict[str, float | None] = {}
    for name, (pool, idx) in sets.items():
        idx = list(idx)
        prompts = [pool.prompts[i] for i in idx]
        chosen = rm.score(prompts, [pool.chosen[i] for i in idx]) if idx else np.zeros(0)
        rejected = rm.score(prompts, [pool.rejected[i] for i in idx]) if idx else np.zeros(0)
        acc = pair_accuracies(chosen, rejected, pool, idx)
        out[f"accuracy_{name}"], out[f"accuracy_{name}_true"] = acc["labels"], acc["true"]
    if pairs is not None:
        flat_prompts = [p for p in pairs.prompts for _ in range(2)]
        flat = [r for two in pairs.responses for r in two]
        scores = np.asarray(rm.score(flat_prompts, flat), dtype=np.float64).reshape(-1, 2)
        out["premise"] = premise_accuracy(scores, pairs.gold)
    return out
