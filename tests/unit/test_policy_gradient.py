"""Policy-gradient maths (RLOO, PPO, GAE), best-of-N and the tokenizer offset mapping, against
hand-computed values and the identities the online-stack issue lists."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from irlalign.generation.best_of_n import best_of_n, kl_bound
from irlalign.generation.offsets import map_rewards_by_offsets
from irlalign.losses.ops import token_kl
from irlalign.losses.policy_gradient import (
    exact_kl_loss,
    gae,
    kl_penalised_rewards,
    ppo_policy_loss,
    ppo_value_loss,
    rloo_advantages,
    rloo_clipped_loss,
    rloo_loss,
    rloo_token_advantages,
    terminal_rewards,
    whiten,
)

MASK = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1]], dtype=torch.long)


def test_rloo_advantages_by_hand_and_sum_to_zero_per_group():
    r = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])
    a = rloo_advantages(r, k=3)
    assert torch.allclose(a[:3], torch.tensor([1 - 4.0, 2 - 3.5, 6 - 1.5]))
    assert torch.allclose(a.reshape(2, 3).sum(1), torch.zeros(2), atol=1e-6)
    with pytest.raises(ValueError, match="k >= 2"):
        rloo_advantages(r, k=1)
    with pytest.raises(ValueError, match="groups of k=4"):
        rloo_advantages(r, k=4)


def test_rloo_clipped_loss_equals_rloo_at_ratio_one_and_clips_beyond():
    """At π = π_old the clipped loss has REINFORCE's gradient; a token whose ratio is
    past 1 ± ε on the side its advantage favours contributes no gradient."""
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]]).bool()
    adv = torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.5, -1.0]])
    old = torch.randn(2, 3)
    a = old.clone().requires_grad_(True)
    b = old.clone().requires_grad_(True)
    la, _ = rloo_loss(a, adv, mask)
    lb, metrics = rloo_clipped_loss(b, old, adv, mask, clip=0.2)
    la.backward()
    lb.backward()
    torch.testing.assert_close(lb, -(adv * mask).sum(1).mean())  # ρ ≡ 1
    torch.testing.assert_close(a.grad, b.grad)
    assert float(metrics["rl/clip_frac"]) == 0.0
    # Row 0, token 0: advantage +1 and ratio e^0.5 > 1.2, so it is clipped (no gradient);
    # token 1: advantage −2 and ratio e^0.5, so the unclipped (larger loss) term is kept.
    c = (old + 0.5).requires_grad_(True)
    loss, metrics = rloo_clipped_loss(c, old, adv, mask, clip=0.2)
    loss.backward()
    assert c.grad[0, 0] == 0.0 and c.grad[0, 1] != 0.0
    assert float(metrics["rl/clip_frac"]) == pytest.approx(1.0)


def test_rloo_token_advantages_by_hand():
    """Two groups of k = 2 (one row shorter): A_t^i = G_t^i − G_t^j, G the reward-to-go."""
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]]).bool()
    adv = rloo_token_advantages(rewards, mask, k=2)
    # G: row 0 [6, 5, 3], row 1 [1, 1, 0]; row 2 [2, 0, 0], row 3 [3, 2, 1]
    expected = torch.tensor([[5.0, 4.0, 3.0], [-5.0, -4.0, 0.0], [-1.0, 0.0, 0.0], [1.0, 2.0, 1.0]])
    torch.testing.assert_close(adv, expected)
    # At the first response token it is the sequence advantage of Eq. 5.
    seq = rloo_advantages(torch.where(mask, rewards, 0.0).sum(1), k=2)
    torch.testing.assert_close(adv[:, 0], seq)


def test_rloo_token_advantages_are_unbiased_and_per_token_loss_matches():
    """The reward-to-go estimator's expected gradient equals the sequence estimator's on a
    two-step bandit with exact enumeration; and a constant per-token advantage gives exactly
    the sequence loss."""
    logps = torch.randn(4, 3, requires_grad=True)
    mask = torch.ones(4, 3).bool()
    seq_adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    a, _ = rloo_loss(logps, seq_adv, mask)
    b, _ = rloo_loss(logps, seq_adv[:, None].expand(4, 3).clone(), mask)
    torch.testing.assert_close(a, b)
    # Exact expectation over all outcomes of k = 2 i.i.d. two-step episodes with softmax
    # policies θ1 (first action) and θ2 (second action); rewards r(a1) + r(a2).
    theta = torch.tensor([[0.3, -0.2], [0.1, 0.4]], requires_grad=True)
    r = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    episodes = [(x, y) for x in range(2) for y in range(2)]
    grads = {}
    for how in ("sequence", "reward_to_go"):
        logp = torch.log_softmax(theta, -1)
        total = 0.0
        for e1 in episodes:
            for e2 in episodes:
                p = torch.exp(logp[0, e1[0]] + logp[1, e1[1]] + logp[0, e2[0]] + logp[1, e2[1]])
                lp = torch.stack([torch.stack([logp[0, e[0]], logp[1, e[1]]]) for e in (e1, e2)])
                rew = torch.stack([torch.stack([r[0, e[0]], r[1, e[1]]]) for e in (e1, e2)])
                m = torch.ones(2, 2).bool()
                if how == "sequence":
                    adv = rloo_advantages(rew.sum(1), k=2)
                else:
                    adv = rloo_token_advantages(rew, m, k=2)
                loss, _ = rloo_loss(lp, adv, m)
                total = total + p.detach() * loss
        grads[how] = torch.autograd.grad(total, theta)[0]
    torch.testing.assert_close(grads["sequence"], grads["reward_to_go"])


def test_exact_kl_estimator_has_the_objectives_gradient():
    """On a two-step episode whose second policy depends on the first action, the expected
    gradient (exact enumeration over k = 2 i.i.d. episodes) of both KL estimators equals the
    gradient of J = E[r1 + r2] − β·KL(π‖π_ref): the sampled penalty in the reward-to-go, and
    the exact per-state KL as a loss term taken out of each token's own advantage."""
    torch.manual_seed(0)
    theta1 = torch.randn(2, requires_grad=True)
    theta2 = torch.randn(2, 2, requires_grad=True)  # second-step logits per first action
    ref1, ref2 = torch.randn(2).log_softmax(-1), torch.randn(2, 2).log_softmax(-1)
    r1, r2 = torch.tensor([0.5, -1.0]), torch.tensor([[1.0, 0.0], [-0.5, 2.0]])
    beta = 0.7
    lp1, lp2 = theta1.log_softmax(-1), theta2.log_softmax(-1)
    episodes = [(x, y) for x in range(2) for y in range(2)]

    def prob(e):
        return torch.exp(lp1[e[0]] + lp2[e[0], e[1]])

    objective = sum(
        prob(e) * (r1[e[0]] + r2[e[0], e[1]] - beta * (lp1[e[0]] - ref1[e[0]] + lp2[e] - ref2[e]))
        for e in episodes
    )
    expected = torch.autograd.grad(objective, (theta1, theta2), retain_graph=True)
    kl1 = (lp1.exp() * (lp1 - ref1)).sum()
    kl2 = (lp2.exp() * (lp2 - ref2)).sum(-1)
    m = torch.ones(2, 2).bool()
    for how in ("sample", "exact"):
        total = 0.0
        for pair in [(a, b) for a in episodes for b in episodes]:
            p = (prob(pair[0]) * prob(pair[1])).detach()
            lp = torch.stack([torch.stack([lp1[e[0]], lp2[e]]) for e in pair])
            ref = torch.stack([torch.stack([ref1[e[0]], ref2[e]]) for e in pair])
            rew = torch.stack([torch.stack([r1[e[0]], r2[e]]) for e in pair])
            shaped = kl_penalised_rewards(rew, lp.detach(), ref, m, kl_coef=beta)
            own = shaped - rew if how == "exact" else None
            loss, _ = rloo_loss(lp, rloo_token_advantages(shaped, m, k=2, own=own), m)
            if how == "exact":
                kl = torch.stack([torch.stack([kl1, kl2[e[0]]]) for e in pair])
                loss = loss + exact_kl_loss(kl, m, kl_coef=beta)
            total = total + p * loss
        # rloo_loss averages over the k = 2 rows, so −∇loss estimates ∇J.
        got = torch.autograd.grad(-total, (theta1, theta2), retain_graph=True)
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4)


def test_token_kl_matches_full_logits_and_only_moves_the_policy():
    torch.manual_seed(0)
    head, ref_head = torch.nn.Linear(4, 7), torch.nn.Linear(4, 7)
    hidden = torch.randn(2, 5, 4, requires_grad=True)
    ref_hidden = torch.randn(2, 5, 4, requires_grad=True)
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]]).bool()
    kl = token_kl(hidden, ref_hidden, mask, head, ref_head, chunk_tokens=3)
    logp = head(hidden[:, :-1]).log_softmax(-1)
    ref = ref_head(ref_hidden[:, :-1]).log_softmax(-1)
    full = (logp.exp() * (logp - ref)).sum(-1) * mask
    torch.testing.assert_close(kl, full)
    kl.sum().backward()
    assert hidden.grad.abs().sum() > 0 and ref_hidden.grad is None
    assert float(kl[0, 0].detach()) == 0.0 and float(kl[0, 3].detach()) == 0.0


def test_terminal_rewards_sit_on_the_last_response_token():
    r = terminal_rewards(torch.tensor([2.0, -1.0]), MASK)
    assert r.tolist() == [[0, 0, 0, 2.0, 0], [0, 0, 0, 0, -1.0]]


def test_dense_reward_on_the_last_token_gives_the_terminal_update():
    torch.manual_seed(0)
    scores = torch.tensor([0.7, -0.3, 1.2, 0.1])
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 1, 1], [0, 1, 0, 0]])
    dense = torch.zeros(4, 4)
    dense[0, 2], dense[1, 3], dense[2, 3], dense[3, 1] = scores  # same mass, built by hand
    assert torch.equal(dense, terminal_rewards(scores, mask))
    logits = torch.randn(4, 4, requires_grad=True)
    grads = []
    for rewards in (dense, terminal_rewards(scores, mask)):
        returns = torch.where(mask.bool(), rewards, torch.zeros_like(rewards)).sum(1)
        loss, _ = rloo_loss(logits.log_softmax(-1), rloo_advantages(returns, k=2), mask)
        grads.append(torch.autograd.grad(loss, logits)[0])
    assert torch.equal(grads[0], grads[1])


def test_gae_matches_a_hand_computed_example():
    rewards = torch.tensor([[0.0, 1.0, 0.0, 2.0, 9.0]])
    values = torch.tensor([[5.0, 0.5, 1.0, 1.5, 9.0]])
    mask = torch.tensor([[0, 1, 1, 1, 0]])
    gamma, lam = 0.9, 0.8
    # Response tokens t = 1, 2, 3; V after t = 3 is 0; position 0 and 4 are masked out.
    d3 = 2.0 + 0 - 1.5
    d2 = 0.0 + gamma * 1.5 - 1.0
    d1 = 1.0 + gamma * 1.0 - 0.5
    a3, a2 = d3, d2 + gamma * lam * d3
    a1 = d1 + gamma * lam * a2
    adv, ret = gae(rewards, values, mask, gamma=gamma, lam=lam)
    assert torch.allclose(adv, torch.tensor([[0.0, a1, a2, a3, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[0.0, a1 + 0.5, a2 + 1.0, a3 + 1.5, 0.0]]))


def test_gae_with_gamma_lambda_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.5, 0.25, 0.125]])
    adv, _ = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[6 - 0.5, 5 - 0.25, 3 - 0.125]]))


def test_ppo_clipped_loss_is_minus_advantage_at_ratio_one():
    logps = torch.tensor([[-1.0, -2.0, -0.5, -3.0, -1.0]], requires_grad=True)
    adv = torch.tensor([[9.0, 1.0, -2.0, 4.0, 9.0]])
    mask = torch.tensor([[0, 1, 1, 1, 0]])
    loss, metrics = ppo_policy_loss(logps, logps.detach(), adv, mask, clip=0.2)
    assert loss.item() == pytest.approx(-(1.0 - 2.0 + 4.0) / 3)
    assert metrics["rl/clip_frac"] == 0


def test_ppo_clipped_loss_has_zero_gradient_outside_the_clip_range():
    old = torch.zeros(1, 4)
    # ratio e^0.5 > 1.2 with A > 0, and e^-0.5 < 0.8 with A < 0: both clipped; the last two are
    # inside the range and keep their gradient.
    logps = torch.tensor([[0.5, -0.5, 0.1, -0.1]], requires_grad=True)
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    loss, metrics = ppo_policy_loss(logps, old, adv, torch.ones(1, 4), clip=0.2)
    (grad,) = torch.autograd.grad(loss, logps)
    assert grad[0, 0] == 0 and grad[0, 1] == 0
    assert grad[0, 2] != 0 and grad[0, 3] != 0
    assert metrics["rl/clip_frac"].item() == pytest.approx(0.5)


def test_ppo_value_loss_clips_by_hand():
    v, old, ret = torch.tensor([[3.0]]), torch.tensor([[1.0]]), torch.tensor([[0.0]])
    loss, _ = ppo_value_loss(v, old, ret, torch.ones(1, 1), clip=0.5)
    assert loss.item() == pytest.approx(0.5 * max(9.0, 1.5**2))


def test_kl_penalty_and_whitening():
    r = torch.tensor([[0.0, 1.0, 2.0]])
    shaped = kl_penalised_rewards(
        r,
        torch.tensor([[0.0, -1.0, -1.0]]),
        torch.full((1, 3), -2.0),
        torch.tensor([[0, 1, 1]]),
        kl_coef=0.1,
    )
    assert torch.allclose(shaped, torch.tensor([[0.0, 0.9, 1.9]]))
    w = whiten(torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1, 1, 1, 0]]))
    assert torch.allclose(w[0, :3].mean(), torch.tensor(0.0), atol=1e-6)
    assert torch.allclose(w[0, :3].pow(2).mean(), torch.tensor(1.0), atol=1e-4)


def test_best_of_n_picks_the_argmax_and_the_kl_bound():
    scores = np.array([[0.1, 0.9, 0.3], [2.0, -1.0, 2.0]])
    assert best_of_n(scores).tolist() == [1, 0]
    assert kl_bound(1) == 0.0
    assert kl_bound(64) == pytest.approx(math.log(64) - 63 / 64)
    with pytest.raises(ValueError, match="finite"):
        best_of_n(np.array([[np.nan, 1.0]]))


def test_offset_mapping_between_two_tokenizers_conserves_the_total():
    text = "the cat sat"
    rm_spans = [(0, 3), (3, 7), (7, 11), (0, 0)]  # "the", " cat", " sat", a special token
    rm_rewards = [0.5, -1.0, 2.0, 0.25]
    pol_spans = [(0, 2), (2, 3), (3, 5), (5, 7), (7, 11)]  # "th", "e", " c", "at", " sat"
    out = map_rewards_by_offsets(rm_spans, rm_rewards, pol_spans)
    assert text[slice(*pol_spans[1])] == "e"
    assert out == [0.0, 0.5, 0.0, -1.0, 2.25]
    assert sum(out) == pytest.approx(sum(rm_rewards))
    rng = np.random.default_rng(0)
    cuts = sorted(rng.choice(np.arange(1, 40), 9, replace=False).tolist())
    rm = list(zip([0, *cuts], [*cuts, 40], strict=True))
    pol = [(0, 7), (7, 7), (7, 23), (23, 40)]  # includes an empty policy span
    rewards = rng.normal(size=len(rm)).tolist()
    assert sum(map_rewards_by_offsets(rm, rewards, pol)) == pytest.approx(sum(rewards))
