"""The synthetic task's true reward r* behind the library's `RewardModel` interface.

RL against the known reward is the upper reference for every learned reward: the same loop,
the same token-reward mapping, only the reward model differs. Like the learned reward models,
the gold reward reads the response text and, when it ended before the horizon without `<eos>`,
appends one (a response is scored as finished).

The horizon is scored as the environment plays it: there `<eos>` is forced at step H − 1, so a
word at that step gets the reward of the forced `<eos>` plus ``invalid_penalty`` (running into
the horizon never pays more than stopping), and tokens past it get ``invalid_penalty`` with
nothing appended. Tokens that are not task words (topics, `<bos>`, `<sep>`) get
``invalid_penalty`` and leave the Markov state (the previous word) unchanged; the evaluation
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
        horizon, eos = self.task.config.horizon, self.task.eos_action
        for t, token in enumerate(tokens + [EOS] if len(tokens) < horizon else tokens):
            action = eos if token == EOS else self._action.get(token)
            ids.append(self.tokenizer.convert_tokens_to_ids(token))
            if action is None or t >= horizon:
                rewards.append(self.invalid_penalty)
            elif t == horizon - 1 and action != eos:  # the environment ends the response here
                rewards.append(float(self._table[t, topic, prev, eos]) + self.invalid_penalty)
            else:
                rewards.append(float(self._table[t, topic, prev, action]))
                prev = action if action != eos else prev
        return ResponseRewards(token_ids=ids, rewards=np.array(rewards))
