"""The synthetic task's true reward r* behind the library's `RewardModel` interface.

RL against the known reward is the upper reference for every learned reward: the same loop,
the same token-reward mapping, only the reward model differs. Like the learned reward models,
the gold reward reads the response text and appends `<eos>` (a response is scored as finished).
Tokens that are not task words (topics, `<bos>`, `<sep>`) and any token at or past the horizon
get ``invalid_penalty`` and leave the Markov state (the previous word) unchanged; the evaluation
sampler masks such tokens out, but an RL policy samples from its full vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from irlalign.modeling.reward import ResponseRewards
from irlalign.synthetic.language import EOS, Task
from irlalign.synthetic.text import parse_prompt


class GoldReward:
    """r*(s_t, a_t) per response token (dense) and its sum (the sequence score)."""

    def __init__(self, task: Task, tokenizer, invalid_penalty: float = -1.0):
        self.task, self.tokenizer, self.invalid_penalty = task, tokenizer, invalid_penalty
        self._table = task.reward_table()
        self._action = {w: a for a, w in enumerate(task.words)}

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return np.array([row.rewards.sum() for row in self.token_rewards(prompts, responses)])

    def token_rewards(
        self, prompts: Sequence[str], responses: Sequence[str]
    ) -> list[ResponseRewards]:
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses must have the same length")
        return [self._one(p, r) for p, r in zip(prompts, responses, strict=True)]

    def _one(self, prompt: str, response: str) -> ResponseRewards:
        topic, words = parse_prompt(self.task, prompt)
        tokens = response.split()
        if tokens and tokens[-1] == EOS:
            tokens = tokens[:-1]
        prev, ids, rewards = int(words[-1]), [], []
        horizon = self.task.config.horizon
        for t, token in enumerate([*tokens, EOS]):
            action = self.task.eos_action if token == EOS else self._action.get(token)
            ids.append(self.tokenizer.convert_tokens_to_ids(token))
            if action is None or t >= horizon:
                rewards.append(self.invalid_penalty)
                continue
            rewards.append(float(self._table[t, topic, prev, action]))
            prev = action if action != self.task.eos_action else prev
        return ResponseRewards(token_ids=ids, rewards=np.array(rewards))
