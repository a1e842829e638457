"""GAIL-style reward −log(1 − D) = softplus(ℓ) from a discriminator whose logit is ℓ (the
Jensen–Shannon choice of AfD's adversarial extension; the AIRL-style reward log D − log(1 − D) is
the logit itself, i.e. the plain sequence-classifier reward model)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from irlalign.modeling.reward import ResponseRewards, RewardModel

PREFIX = "gail:"  # reward_model spec: "gail:<discriminator folder>"


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


class GAILReward:
    """softplus of a discriminator's score; the whole reward sits on the final token."""

    def __init__(self, discriminator: RewardModel):
        self.discriminator = discriminator
        self.tokenizer = getattr(discriminator, "tokenizer", None)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return softplus(np.asarray(self.discriminator.score(prompts, responses), dtype=float))

    def token_rewards(
        self, prompts: Sequence[str], responses: Sequence[str]
    ) -> list[ResponseRewards]:
        rows = self.discriminator.token_rewards(prompts, responses)
        out = []
        for row, total in zip(rows, self.score(prompts, responses), strict=True):
            rewards = np.zeros(len(row.token_ids))
            rewards[-1] = total
            out.append(ResponseRewards(token_ids=row.token_ids, rewards=rewards))
        return out
