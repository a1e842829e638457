"""Rewards on the policy's tokens: the gold reward r*, the dense/terminal placement, mapping
through a different tokenizer, reward standardisation and GAIL's softplus."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irlalign.generation.offsets import prefix_spans
from irlalign.generation.rewards import policy_token_rewards
from irlalign.generation.sampling import Rollouts
from irlalign.losses.policy_gradient import standardise_rewards
from irlalign.modeling.gail_reward import GAILReward
from irlalign.modeling.reward import ResponseRewards
from irlalign.synthetic import oracle
from irlalign.synthetic.gold import GoldReward
from irlalign.synthetic.model import action_token_ids, build_tokenizer
from irlalign.synthetic.text import prompt_text, response_text


@pytest.fixture(scope="module")
def gold(default_task):
    return GoldReward(default_task, build_tokenizer(default_task))


def _example(task, actions):
    topic, words = 3, np.array([5, 7])
    return prompt_text(task, topic, words), response_text(task, np.array(actions)), topic, words


def test_gold_reward_is_r_star_along_the_response(default_task, gold):
    task = default_task
    prompt, response, topic, words = _example(task, [4, 9, 11, task.eos_action])
    row = gold.token_rewards([prompt], [response])[0]
    want = oracle.sequence_rewards(
        task.reward_table(), topic, words[-1], np.array([4, 9, 11, task.eos_action])
    )
    np.testing.assert_allclose(row.rewards, want)
    assert row.token_ids == [int(action_token_ids(task)[a]) for a in (4, 9, 11, task.eos_action)]
    # The `<eos>` text may be absent (decoded with skip_special_tokens): scored as finished.
    bare = response.replace(" <eos>", "")
    assert gold.score([prompt], [bare])[0] == pytest.approx(want.sum())


def test_gold_reward_penalises_off_task_tokens_and_the_horizon(default_task, gold):
    task = default_task
    prompt, response, _, _ = _example(task, [4, task.eos_action])
    with_topic = f"{task.topics[0]} {response}"
    row = gold.token_rewards([prompt], [with_topic])[0]
    assert row.rewards[0] == gold.invalid_penalty
    too_long = " ".join([task.words[0]] * (task.config.horizon + 2))
    rewards = gold.token_rewards([prompt], [too_long])[0].rewards
    assert len(rewards) == task.config.horizon + 2  # nothing appended past the horizon
    assert (rewards[task.config.horizon :] == gold.invalid_penalty).all()


def test_gold_reward_agrees_with_the_environment_at_the_horizon(default_task, gold):
    """Responses the environment produces (π_ref samples, many forced to `<eos>` at step H − 1)
    score exactly their true return; a response that runs past step H − 1 instead scores the
    environment's forced ending plus the invalid-token penalty, never more than stopping."""
    from irlalign.synthetic.text import sample_prompts

    task, horizon = default_task, default_task.config.horizon
    prompts = sample_prompts(task, 300, np.random.default_rng(0))
    responses = oracle.sample(
        task.ref_table(), prompts.topics, prompts.last_words, np.random.default_rng(1)
    )
    forced = [a for a in responses if len(a) == horizon]
    assert forced, "some reference responses reach the horizon"
    for k, w, actions in zip(prompts.topics, prompts.last_words, responses, strict=True):
        text_prompt = prompt_text(task, int(k), np.array([w]))
        true = oracle.sequence_rewards(task.reward_table(), k, w, actions).sum()
        # decoded with and without the final `<eos>` text: the same score
        full = response_text(task, actions)
        assert gold.score([text_prompt], [full])[0] == pytest.approx(true)
        assert gold.score([text_prompt], [full.replace(" <eos>", "")])[0] == pytest.approx(true)
    # A response cut by the length budget at H tokens, with a word where the environment forces
    # `<eos>`: scored as the forced ending plus the penalty.
    k, w, actions = 0, 1, forced[0]
    text_prompt = prompt_text(task, k, np.array([w]))
    stopped = oracle.sequence_rewards(
        task.reward_table(), k, w, np.array([*forced[0][:-1]] + [task.eos_action])
    )
    ran_on = response_text(task, np.array([*actions[:-1], 0])).replace(" <eos>", "")
    score = gold.score([text_prompt], [ran_on])[0]
    assert score == pytest.approx(stopped.sum() + gold.invalid_penalty)
    assert score < stopped.sum()


class _FixedRM:
    """Token rewards given per response; its own (different) tokenizer."""

    def __init__(self, tokenizer, rows):
        self.tokenizer, self.rows = tokenizer, rows

    def token_rewards(self, prompts, responses):
        return self.rows

    def score(self, prompts, responses):
        return np.array([r.rewards.sum() for r in self.rows])


class _CharTokenizer:
    """One token per character: a tokenizer unlike the word-level policy tokenizer."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


def _rollouts(tok, prompt: str, response_ids: list[int]) -> Rollouts:
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + response_ids])
    cm = torch.tensor([[0] * len(p) + [1] * len(response_ids)])
    return Rollouts(
        [prompt],
        [tok.decode(response_ids, skip_special_tokens=True)],
        ids,
        torch.ones_like(ids),
        cm,
        torch.zeros(1, ids.shape[1] - 1),
        torch.tensor([True]),
        1,
    )


def test_dense_rewards_move_through_character_offsets_and_keep_the_total(default_task):
    tok = build_tokenizer(default_task)
    prompt, _, _, _ = _example(default_task, [default_task.eos_action])
    response_ids = [int(action_token_ids(default_task)[a]) for a in (4, 9)] + [tok.eos_token_id]
    ro = _rollouts(tok, prompt, response_ids)
    text = ro.responses[0]
    chars = [ord(c) for c in text]
    rewards = np.arange(1, len(chars) + 1, dtype=float)
    rm = _FixedRM(_CharTokenizer(), [ResponseRewards(chars, rewards)])
    dense = policy_token_rewards(rm, tok, ro, dense=True)[0]
    positions = ro.completion_mask[0].bool().nonzero().squeeze(1) - 1
    got = dense[positions].numpy()
    assert got.sum() == pytest.approx(rewards.sum())
    first_word = len(default_task.words[4])
    assert got[0] == pytest.approx(rewards[:first_word].sum())  # the first word's characters
    assert got[-1] == 0.0  # EOS has an empty span and no RM character ends inside it
    terminal = policy_token_rewards(rm, tok, ro, dense=False)[0]
    assert (
        terminal[positions[-1]] == pytest.approx(rewards.sum())
        and terminal.sum() == terminal[positions[-1]]
    )


def test_prefix_spans_cover_the_decoded_text(default_task):
    tok = build_tokenizer(default_task)
    ids = [int(action_token_ids(default_task)[a]) for a in (4, 9)] + [tok.eos_token_id]
    spans = prefix_spans(tok, ids)
    text = tok.decode(ids, skip_special_tokens=True)
    assert spans[-1] == (len(text), len(text))  # special token: empty span
    assert text[spans[0][0] : spans[0][1]].strip() == default_task.words[4]


def test_standardised_rewards_standardise_the_returns():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    rewards = torch.randn(3, 4) * mask
    out = standardise_rewards(rewards, mask, mean=0.7, std=2.0)
    assert torch.allclose(out.sum(1), ((rewards * mask).sum(1) - 0.7) / 2.0)
    assert (out[~mask.bool()] == 0).all()


def test_gail_reward_is_softplus_of_the_logit(default_task):
    rows = [ResponseRewards([1, 2, 3], np.array([0.0, 0.0, -1.5]))]
    gail = GAILReward(_FixedRM(None, rows))
    assert gail.score(["p"], ["r"])[0] == pytest.approx(np.log1p(np.exp(-1.5)))
    assert gail.token_rewards(["p"], ["r"])[0].rewards.tolist()[:2] == [0.0, 0.0]
