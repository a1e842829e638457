"""The exact oracle: soft Bellman identities, π* rows, inverse Bellman, sampling frequencies."""

from __future__ import annotations

import numpy as np
import pytest

from irlalign.synthetic import oracle
from irlalign.synthetic.text import sample_prompts


@pytest.fixture(scope="module")
def solved(default_task):
    return default_task, oracle.expert(default_task)


def _successor(v_next, n_k):
    return np.concatenate([v_next, np.zeros((n_k, 1))], axis=1)[:, None, :]


def test_soft_bellman_identities(solved):
    task, ex = solved
    ref, r, beta = task.ref_table(), task.reward_table(), task.config.beta
    n_k = task.config.n_topics
    for t in range(task.config.horizon):
        np.testing.assert_allclose(ex.q[t], r[t] + _successor(ex.v[t + 1], n_k), atol=1e-9)
        with np.errstate(divide="ignore"):
            logsum = np.log((ref[t] * np.exp(ex.q[t] / beta)).sum(-1))
        np.testing.assert_allclose(ex.v[t], beta * logsum, atol=1e-9)
        # V is also the KL-regularised expected value under π*.
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.where(ex.policy[t] > 0, np.log(ex.policy[t] / ref[t]), 0.0)
        v_pi = (ex.policy[t] * (ex.q[t] - beta * log_ratio)).sum(-1)
        np.testing.assert_allclose(ex.v[t], v_pi, atol=1e-9)
    assert np.all(ex.v[-1] == 0.0)


def test_policy_rows_sum_to_one(solved):
    task, ex = solved
    np.testing.assert_allclose(ex.policy.sum(-1), 1.0, atol=1e-12)
    styled = oracle.styled(ex.policy, task.synonym_pairs(), task.config.style_factor)
    np.testing.assert_allclose(styled.sum(-1), 1.0, atol=1e-12)
    assert np.all(ex.policy[-1, ..., task.eos_action] == 1.0)  # forced <eos> at the horizon


def test_inverse_soft_bellman_recovers_r_star(solved):
    task, ex = solved
    ref, r, beta = task.ref_table(), task.reward_table(), task.config.beta
    rng = np.random.default_rng(0)
    n = 500
    t = rng.integers(0, task.config.horizon - 1, n)
    k = rng.integers(0, task.config.n_topics, n)
    w = rng.integers(0, task.config.n_words, n)
    a = rng.integers(0, task.n_actions, n)
    word = np.minimum(a, task.config.n_words - 1)
    v_next = np.where(a == task.eos_action, 0.0, ex.v[t + 1, k, word])
    recovered = beta * np.log(ex.policy[t, k, w, a] / ref[t, k, w, a]) + ex.v[t, k, w] - v_next
    np.testing.assert_allclose(recovered, r[t, k, w, a], atol=1e-9)
    np.testing.assert_allclose(ex.q[t, k, w, a] - v_next, r[t, k, w, a], atol=1e-9)


def _occupancy_counts(policy, topics, last_words, n_actions):
    """Exact expected number of times each action is emitted, averaged over the given starts."""
    horizon, n_k, n_w, _ = policy.shape
    d = np.zeros((n_k, n_w))
    np.add.at(d, (topics, last_words), 1.0 / len(topics))
    counts = np.zeros(n_actions)
    for t in range(horizon):
        flow = d[..., None] * policy[t]
        counts += flow.sum((0, 1))
        d = flow[..., :n_w].sum(1)  # next prev word = the word just emitted
    return counts


def test_sampled_demonstrations_match_expert_token_frequencies(solved):
    """20k sampled responses: each action's mean count per response lies within 5 standard
    errors of its exact expectation (49 actions, so a false alarm has probability < 3e-5)."""
    task, ex = solved
    rng = np.random.default_rng(1)
    prompts = sample_prompts(task, 20_000, rng)
    actions = oracle.sample(ex.policy, prompts.topics, prompts.last_words, rng)
    per_row = np.stack([np.bincount(a, minlength=task.n_actions) for a in actions])
    mean, se = per_row.mean(0), per_row.std(0, ddof=1) / np.sqrt(len(actions))
    exact = _occupancy_counts(ex.policy, prompts.topics, prompts.last_words, task.n_actions)
    assert exact[task.eos_action] == pytest.approx(1.0)
    z = np.abs(mean - exact) / np.maximum(se, 1e-12)
    assert z.max() < 5.0, f"worst action z-score {z.max():.2f}"


def test_styled_demonstrator_same_return_different_style(solved):
    task, ex = solved
    styled = oracle.styled(ex.policy, task.synonym_pairs(), task.config.style_factor)
    r = task.reward_table()
    v_ex, v_st = oracle.policy_values(ex.policy, r), oracle.policy_values(styled, r)
    np.testing.assert_allclose(v_st[0], v_ex[0], atol=1e-9)  # exactly the same return
    rng = np.random.default_rng(2)
    prompts = sample_prompts(task, 4000, rng)
    ret, second = {}, {}
    for name, pol in (("expert", ex.policy), ("styled", styled)):
        acts = oracle.sample(pol, prompts.topics, prompts.last_words, np.random.default_rng(3))
        ret[name] = np.array(
            [
                oracle.sequence_rewards(r, k, w, a).sum()
                for k, w, a in zip(prompts.topics, prompts.last_words, acts, strict=True)
            ]
        )
        flat = np.concatenate(acts)
        firsts = np.isin(flat, [p[0] for p in task.synonym_pairs()]).sum()
        seconds = np.isin(flat, [p[1] for p in task.synonym_pairs()]).sum()
        second[name] = seconds / (firsts + seconds)
    exact = oracle.start_values(v_ex, prompts.topics, prompts.last_words).mean()
    for name in ret:  # Monte-Carlo return within 4 standard errors of the exact value
        assert abs(ret[name].mean() - exact) < 4 * ret[name].std() / np.sqrt(len(ret[name]))
    factor = task.config.style_factor
    assert second["expert"] == pytest.approx(0.5, abs=0.03)
    assert second["styled"] == pytest.approx(factor / (1 + factor), abs=0.03)


def test_synonyms_share_reference_and_reward(default_task):
    task = default_task
    ref, r = task.ref_words, task.reward_table()
    for a, b in task.synonym_pairs():
        np.testing.assert_array_equal(ref[a], ref[b])
        np.testing.assert_array_equal(ref[:, a], ref[:, b])
        np.testing.assert_array_equal(r[..., a], r[..., b])
        np.testing.assert_array_equal(r[:, :, a], r[:, :, b])


def test_reference_mean_length_and_expert_gap(default_task):
    task = default_task
    ref = task.ref_table()
    rng = np.random.default_rng(4)
    prompts = sample_prompts(task, 500, rng)
    lengths = oracle.policy_values(ref, np.ones_like(ref))
    mean_len = oracle.start_values(lengths, prompts.topics, prompts.last_words).mean()
    assert mean_len == pytest.approx(task.config.mean_length, abs=1e-6)
    ex = oracle.expert(task)
    kl = oracle.policy_values(ex.policy, oracle.kl_per_step(ex.policy, ref))
    kl0 = oracle.start_values(kl, prompts.topics, prompts.last_words).mean()
    assert 1.0 < kl0 < 5.0  # "a few nats": different from π_ref, still a plausible language


def _enumerate(policy, ref, reward, k, w, horizon, n_words):
    """Every response from (t=0, topic k, previous word w) with its probability under
    ``policy`` and ``ref`` and its return: ends at `<eos>` (action n_words) or the horizon."""
    out, stack = [], [(0, w, 1.0, 1.0, 0.0)]
    while stack:
        t, prev, p_pi, p_ref, ret = stack.pop()
        if t == horizon:
            out.append((p_pi, p_ref, ret))
            continue
        for a in range(n_words + 1):
            step = (p_pi * policy[t, k, prev, a], p_ref * ref[t, k, prev, a])
            new_ret = ret + reward[t, k, prev, a]
            if a == n_words:
                out.append((*step, new_ret))
            elif step[1] > 0:
                stack.append((t + 1, a, *step, new_ret))
    return out


def test_objective_and_optimum_match_brute_force_enumeration():
    """On a random 3-step, 2-word task: J* = β log Σ_y π_ref(y) exp(R(y)/β) is the oracle's
    start value, and J(π) = Σ_y π(y)(R(y) − β log π(y)/π_ref(y)) is `exact_objective`'s."""
    from types import SimpleNamespace

    from irlalign.synthetic.evaluate import exact_objective

    rng = np.random.default_rng(0)
    horizon, n_k, n_w, beta = 3, 2, 2, 0.7
    ref = rng.dirichlet(np.ones(n_w + 1), size=(horizon, n_k, n_w))
    reward = rng.normal(size=(horizon, n_k, n_w, n_w + 1))
    solved = oracle.soft_optimal(ref, reward, beta)
    policy = rng.dirichlet(np.ones(n_w + 1), size=(horizon, n_k, n_w))
    task = SimpleNamespace(
        reward_table=lambda: reward, ref_table=lambda: ref, config=SimpleNamespace(beta=beta)
    )
    prompts = SimpleNamespace(topics=np.array([0, 1, 1]), last_words=np.array([1, 0, 1]))
    exact = exact_objective(task, policy, prompts)
    for i, (k, w) in enumerate(zip(prompts.topics, prompts.last_words, strict=True)):
        paths = _enumerate(policy, ref, reward, k, w, horizon, n_w)
        assert abs(sum(p for p, _, _ in paths) - 1.0) < 1e-12
        optimum = beta * np.log(sum(q * np.exp(r / beta) for _, q, r in paths))
        assert solved.v[0, k, w] == pytest.approx(optimum, abs=1e-10)
        j = sum(p * (r - beta * np.log(p / q)) for p, q, r in paths)
        assert exact[i] == pytest.approx(j, abs=1e-10)
    # π* attains the optimum, and any other policy falls short of it.
    at_optimum = exact_objective(task, solved.policy, prompts)
    np.testing.assert_allclose(at_optimum, solved.v[0, prompts.topics, prompts.last_words])
    assert (exact < at_optimum).all()


def test_sampled_objective_estimates_the_exact_one(solved):
    """`policy_metrics`' Monte-Carlo J(π) lies within 4 standard errors of the exact J(π), for
    π_ref (J well below J*) and for π* (J = J*, reported as `optimal_objective`)."""
    from irlalign.synthetic.evaluate import exact_objective, policy_metrics
    from irlalign.synthetic.sampling import sample_tabular

    task, ex = solved
    prompts = sample_prompts(task, 400, np.random.default_rng(2))
    for policy in (task.ref_table(), ex.policy):
        metrics = policy_metrics(task, prompts, sample_tabular(task, policy, prompts, 8, seed=3))
        exact = float(exact_objective(task, policy, prompts).mean())
        assert abs(metrics["objective"] - exact) < 4 * metrics["objective_se"]
    assert metrics["optimal_objective"] == pytest.approx(exact, abs=1e-9)
