"""The TRL adapters that need no TRL: reward functions over TRL's prompt/completion forms and
the per-token group advantages of `DenseRewardGRPOTrainer`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irlalign.integrations.trl import as_reward_func, group_advantages, token_reward_tensor
from irlalign.modeling.reward import ResponseRewards


class _LengthRM:
    """Scores a response by its length in characters and remembers what it was asked."""

    tokenizer = None

    def score(self, prompts, responses):
        self.seen = list(zip(prompts, responses, strict=True))
        return np.array([float(len(r)) for r in responses])


class _ChatTokenizer:
    chat_template = "{{ messages }}"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt
        return "|".join(m["content"] for m in messages) + "|>"


def test_reward_func_scores_plain_text_completions():
    rm = _LengthRM()
    func = as_reward_func(rm, name="length")
    assert func.__name__ == "length"
    assert func(prompts=["a", "b"], completions=["xyz", ""], completion_ids=[[1], []]) == [3.0, 0.0]
    assert rm.seen == [("a", "xyz"), ("b", "")]


def test_reward_func_renders_conversational_prompts():
    rm = _LengthRM()
    func = as_reward_func(rm, chat_tokenizer=_ChatTokenizer())
    prompts = [[{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]]
    completions = [[{"role": "assistant", "content": "hello"}]]
    assert func(prompts=prompts, completions=completions, trainer_state=None) == [5.0]
    assert rm.seen == [("s|hi|>", "hello")]
    with pytest.raises(ValueError, match="chat template"):
        as_reward_func(rm)(prompts=prompts, completions=completions)


def test_group_advantages_are_leave_one_out_reward_to_go():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, 4.0, 0.0], [1.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 0], [1, 0, 0]])
    adv = group_advantages(rewards, mask, k=2, scale="none")
    # Group 1: reward-to-go [6, 5, 3] and [4, 4, 0]; each row minus the other row, per position.
    torch.testing.assert_close(adv[:2], torch.tensor([[2.0, 1.0, 3.0], [-2.0, -1.0, 0.0]]))
    # Group 2: [2, 1, 0] and [2, 0, 0]; the masked position stays 0.
    torch.testing.assert_close(adv[2:], torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    scaled = group_advantages(rewards, mask, k=2, scale="group")
    std = torch.tensor([6.0, 4.0]).std()  # the group's returns
    torch.testing.assert_close(scaled[:2], adv[:2] / (std + 1e-4))
    alone = group_advantages(rewards, mask, k=1, scale="none")  # no group: the reward-to-go
    torch.testing.assert_close(alone[0], torch.tensor([6.0, 5.0, 3.0]))


class _CharTokenizer:
    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


def test_token_rewards_land_on_the_policy_tokens_with_their_total():
    tok = _CharTokenizer()
    same = ResponseRewards([ord("a"), ord("b")], np.array([1.0, 2.0]))
    words = ResponseRewards([ord("c")], np.array([5.0]))  # one RM token for two policy chars
    ids = torch.tensor([[ord("a"), ord("b"), 0], [ord("c"), ord("d"), 0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    out = token_reward_tensor([same, words], ids, mask, tok, tok)
    torch.testing.assert_close(out[0], torch.tensor([1.0, 2.0, 0.0]))
    assert out[1].sum().item() == pytest.approx(5.0) and out[1, 2] == 0.0
