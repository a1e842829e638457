"""A reward model on preference pairs: how often it ranks the chosen response first.

Accuracy counts a tied score as half right (as `pairwise_accuracy` does everywhere in the
library), so a model that scores everything alike sits at 0.5. For a model with a posterior σ
(AVA), pairs are also binned by the σ of their score margin: if σ means anything, accuracy falls
as it grows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from irlalign.eval.metrics import pairwise_accuracy
from irlalign.modeling.reward import RewardModel


@dataclass(frozen=True)
class PreferencePairs:
    prompts: list[str]
    chosen: list[str]
    rejected: list[str]


def load_pairs(data: str, split: str) -> PreferencePairs:
    """Plain-text preference rows of a file, folder or Hub dataset, validated as for training
    (file, row and field errors name the source)."""
    from irlalign.data.formats import check_dataset
    from irlalign.data.loading import load_rows

    where = f"{data} [{split}]"
    rows = load_rows(data, split)
    fmt = check_dataset(rows, where).fmt
    if fmt.kind != "preference":
        raise ValueError(f"{where}: expected preference rows (prompt, chosen, rejected)")
    # A reward model scores (prompt, response) strings; a conversation has no single rendering
    # that every reward model was trained on.
    if fmt.conversational:
        raise ValueError(f"{where}: reward-model evaluation needs plain-text preference rows")
    return PreferencePairs(list(rows["prompt"]), list(rows["chosen"]), list(rows["rejected"]))


def pair_accuracy(chosen: np.ndarray, rejected: np.ndarray) -> float:
    """Fraction of pairs scored chosen > rejected; ties count 0.5."""
    n = len(chosen)
    return pairwise_accuracy(chosen, rejected, np.ones(n), np.zeros(n))


def evaluate_reward_model(rm: RewardModel, pairs: PreferencePairs, bins: int = 4) -> dict:
    """`accuracy`, `mean_margin` (mean chosen − rejected score), `n_pairs`, and for a model with
    σ, `sigma_bins`: accuracy over pairs grouped into `bins` quantiles of the margin's σ."""
    if not pairs.prompts:
        raise ValueError("no preference pairs to evaluate")
    s_c = np.asarray(rm.score(pairs.prompts, pairs.chosen), dtype=float)
    s_r = np.asarray(rm.score(pairs.prompts, pairs.rejected), dtype=float)
    out = {
        "accuracy": pair_accuracy(s_c, s_r),
        "mean_margin": float(np.mean(s_c - s_r)),
        "n_pairs": len(s_c),
    }
    sigma = margin_sigma(rm, pairs)
    if sigma is not None:
        out["sigma_bins"] = sigma_bins(sigma, s_c, s_r, bins)
    return out


def margin_sigma(rm: RewardModel, pairs: PreferencePairs) -> np.ndarray | None:
    """σ of each pair's score margin, treating the two scores as independent Gaussians; None
    for a model without a posterior."""
    sides = [score_sigma(rm, pairs.prompts, pairs.chosen), None]
    if sides[0] is None:
        return None
    sides[1] = score_sigma(rm, pairs.prompts, pairs.rejected)
    return np.sqrt(sides[0] ** 2 + sides[1] ** 2)


def score_sigma(
    rm: RewardModel, prompts: Sequence[str], responses: Sequence[str]
) -> np.ndarray | None:
    """σ of each response's score: the final token's for a last-token score (AVA-p); for a
    summed score (AVA-d), the root sum of squares over the tokens it sums (all but the last)."""
    rows = rm.token_rewards(prompts, responses)
    if not rows or rows[0].sigma is None:
        return None
    if summed_score(rm):
        return np.array([float(np.sqrt(np.sum(r.sigma[:-1] ** 2))) for r in rows])
    return np.array([float(r.sigma[-1]) for r in rows])


def summed_score(rm: RewardModel) -> bool:
    """Whether an AVA reward model's score sums its token rewards (`AVAReward` reads the same
    attribute of its head)."""
    from irlalign.modeling.heads import get_head

    model = getattr(rm, "model", None)
    head = get_head(model, "reward") if model is not None else None
    return getattr(head, "score", None) == "sum"


def sigma_bins(sigma: np.ndarray, s_c: np.ndarray, s_r: np.ndarray, bins: int) -> list[dict]:
    """Accuracy per quantile bin of σ (lowest σ first); empty bins (ties in σ) are left out."""
    edges = np.quantile(sigma, np.linspace(0, 1, bins + 1))
    index = np.clip(np.searchsorted(edges, sigma, side="right") - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        rows = index == b
        if rows.any():
            out.append(
                {
                    "sigma_low": float(edges[b]),
                    "sigma_high": float(edges[b + 1]),
                    "n_pairs": int(rows.sum()),
                    "accuracy": pair_accuracy(s_c[rows], s_r[rows]),
                }
            )
    return out
