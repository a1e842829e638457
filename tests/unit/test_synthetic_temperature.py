"""Tabular policies at a sampling temperature: the tempered table, and metrics of its samples."""

from __future__ import annotations

import numpy as np
import pytest

from irlalign.synthetic import oracle
from irlalign.synthetic.evaluate import KL_KEYS, frontier_row
from irlalign.synthetic.sampling import sample_tabular, temper
from irlalign.synthetic.text import sample_prompts


@pytest.fixture(scope="module")
def expert_policy(default_task):
    return oracle.expert(default_task).policy


def test_temper(default_task, expert_policy):
    ref = default_task.ref_table()
    assert temper(ref, 1.0) is ref
    for t in (0.5, 2.0):
        tempered = temper(expert_policy, t)
        np.testing.assert_allclose(tempered.sum(-1), 1.0, atol=1e-12)
        # π_T ∝ π^(1/T): log-ratios between two actions scale by 1/T.
        ratio = np.log(tempered[0, 0, 0, :2]) - np.log(tempered[0, 0, 0, 1:3])
        expected = (np.log(expert_policy[0, 0, 0, :2]) - np.log(expert_policy[0, 0, 0, 1:3])) / t
        np.testing.assert_allclose(ratio, expected, atol=1e-9)
    # Zeros stay zero (the forced `<eos>` at the horizon), and T = 0 is the argmax.
    assert np.all(temper(ref, 0.5)[-1, ..., default_task.eos_action] == 1.0)
    greedy = temper(expert_policy, 0.0)
    assert np.all(greedy.sum(-1) == 1.0) and set(np.unique(greedy)) == {0.0, 1.0}
    assert np.all(greedy.argmax(-1) == expert_policy.argmax(-1))
    np.testing.assert_allclose(
        temper(ref, 0.8), default_task.ref_table(temperature=0.8), rtol=1e-12, atol=1e-15
    )
    with pytest.raises(ValueError, match="temperature"):
        temper(ref, -1.0)


def test_sampled_kl_is_the_kl_of_the_tempered_policy(default_task, expert_policy):
    """At T ≠ 1 the samples' log-probs are those of π_T, so `kl_expert` estimates the exact
    KL(π_T ‖ π*) (by backward induction) within 4 standard errors, and the entropy falls with T."""
    prompts = sample_prompts(default_task, 300, np.random.default_rng(0))
    topics, last = prompts.topics, prompts.last_words
    entropies = []
    for t in (0.7, 1.4):
        tempered = temper(expert_policy, t)
        drawn = sample_tabular(default_task, expert_policy, prompts, 4, seed=1, temperature=t)
        row = frontier_row(default_task, prompts, drawn, t)
        per_response = [
            lp.sum() - oracle.sequence_log_probs(expert_policy, topics[i], last[i], a).sum()
            for i, a, lp in zip(drawn.prompt_index, drawn.actions, drawn.logp, strict=True)
        ]
        se = np.std(per_response, ddof=1) / np.sqrt(len(per_response))
        kl_values = oracle.policy_values(tempered, oracle.kl_per_step(tempered, expert_policy))
        exact = oracle.start_values(kl_values, topics, last).mean()
        assert row["kl_expert"] == pytest.approx(np.mean(per_response))
        assert abs(row["kl_expert"] - exact) < 4 * se
        assert exact > 0.05  # far enough from π* for the check to mean something
        assert (row["decoding"], row["temperature"]) == ("sample", t)
        entropies.append(row["entropy"])
    assert entropies[0] < entropies[1]


def test_greedy_rows_have_no_kl(default_task, expert_policy):
    prompts = sample_prompts(default_task, 20, np.random.default_rng(0))
    drawn = sample_tabular(default_task, expert_policy, prompts, 3, seed=0, temperature=0.0)
    row = frontier_row(default_task, prompts, drawn, 0.0)
    assert row["decoding"] == "greedy" and all(row[k] is None for k in KL_KEYS)
    assert row["entropy"] == 0.0 and row["self_bleu"] == pytest.approx(1.0)
    assert np.isfinite(row["normalised_score"])
