"""Reward recovery on the synthetic benchmark: r* itself and r* shaped by V* are recognised."""

from __future__ import annotations

import numpy as np
import pytest

from irlalign.synthetic import oracle
from irlalign.synthetic.evaluate import reward_recovery
from irlalign.synthetic.text import prompt_text, response_text, sample_prompts


def _responses(task, n=64, seed=0):
    rng = np.random.default_rng(seed)
    prompts = sample_prompts(task, n, rng)
    star = oracle.expert(task)
    actions = oracle.sample(star.policy, prompts.topics, prompts.last_words, rng)
    texts = [prompt_text(task, k, w) for k, w in zip(prompts.topics, prompts.words, strict=True)]
    return prompts, texts, [response_text(task, a) for a in actions], actions


def test_true_reward_and_its_shaping_are_recovered(default_task):
    task = default_task
    prompts, texts, responses, actions = _responses(task)
    star = oracle.expert(task)
    true = [
        oracle.sequence_rewards(task.reward_table(), k, w, a)
        for k, w, a in zip(prompts.topics, prompts.last_words, actions, strict=True)
    ]
    out = reward_recovery(task, texts, responses, true)
    assert out["recovery_spearman_raw"] == pytest.approx(1.0)
    assert out["recovery_tokens"] == sum(len(a) for a in actions)
    ref = task.ref_table()
    shaped = [
        task.config.beta
        * (
            oracle.sequence_log_probs(star.policy, k, w, a)
            - oracle.sequence_log_probs(ref, k, w, a)
        )
        for k, w, a in zip(prompts.topics, prompts.last_words, actions, strict=True)
    ]
    assert reward_recovery(task, texts, responses, shaped)["recovery_spearman_shaped"] == (
        pytest.approx(1.0)
    )
    noise = [np.random.default_rng(1).normal(size=len(a)) for a in actions]
    assert abs(reward_recovery(task, texts, responses, noise)["recovery_spearman_raw"]) < 0.1


def test_length_mismatch_is_an_error(default_task):
    _, texts, responses, _ = _responses(default_task, n=2)
    with pytest.raises(ValueError, match="learned rewards for"):
        reward_recovery(default_task, texts, responses, [np.zeros(1), np.zeros(1)])
