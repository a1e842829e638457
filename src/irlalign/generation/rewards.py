"""Reward-model outputs on a policy's own tokens: the (B, L − 1) action-aligned rewards that
`irlalign.losses.policy_gradient` consumes.

Dense mode asks the reward model for per-token rewards over its own tokens and moves them onto
the policy's tokens: position by position when both tokenised the response identically,
otherwise through character offsets, and as a last resort (a reward model
without a tokenizer) as one sum on the final token, which gives the same return at γ = 1.
Terminal mode puts the sequence score on the final response token.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from irlalign.generation.offsets import map_rewards_by_offsets, prefix_spans
from irlalign.generation.sampling import Rollouts
from irlalign.modeling.reward import ResponseRewards, RewardModel


def completion_ids(rollouts: Rollouts, row: int) -> list[int]:
    return rollouts.input_ids[row][rollouts.completion_mask[row].bool()].tolist()


def dense_on_policy_tokens(
    rm_row: ResponseRewards, policy_ids: list[int], policy_tokenizer, rm_tokenizer
) -> list[float]:
    """One reward-model response's token rewards as rewards for the policy's tokens."""
    rewards = [float(r) for r in np.asarray(rm_row.rewards)]
    if list(rm_row.token_ids) == list(policy_ids):
        return rewards
    if rm_tokenizer is None:
        return [0.0] * (len(policy_ids) - 1) + [sum(rewards)]
    rm_spans = prefix_spans(rm_tokenizer, rm_row.token_ids)
    return map_rewards_by_offsets(rm_spans, rewards, prefix_spans(policy_tokenizer, policy_ids))


def policy_token_rewards(
    rm: RewardModel, policy_tokenizer, rollouts: Rollouts, *, dense: bool
) -> Tensor:
    """(B, L − 1) fp32 rewards aligned with ``rollouts.logps``; zero outside the response."""
    out = torch.zeros(rollouts.logps.shape, dtype=torch.float32)
    if dense:
        rows = rm.token_rewards(rollouts.prompts, rollouts.responses)
        rm_tokenizer = getattr(rm, "tokenizer", None)
    else:
        scores = rm.score(rollouts.prompts, rollouts.responses)
    for b in range(out.shape[0]):
        positions = rollouts.completion_mask[b].bool().nonzero().squeeze(1) - 1  # action index
        if positions.numel() == 0:
            continue
        if dense:
            ids = completion_ids(rollouts, b)
            values = dense_on_policy_tokens(rows[b], ids, policy_tokenizer, rm_tokenizer)
            out[b, positions] = torch.tensor(values, dtype=torch.float32)
        else:
            out[b, positions[-1]] = float(scores[b])
    return out
