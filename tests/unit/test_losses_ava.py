"""irlalign.losses.ava: the invariants of the AVA terms, the per-token terms written out
position by position, and AVA-d equal to AVRIL's objective on a tabular problem."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from irlalign.losses.ava import (
    ava_d_loss,
    ava_p_loss,
    ava_token_terms,
    causal_reward_weights,
    full_reward_weights,
    gaussian_log_density,
    head_weights,
    kl_to_std_normal,
    last_token_score,
    ptq_q,
    q_taken,
    summed_score,
    token_rewards,
)

SEED = 0
V, D = 13, 8
DT = torch.float64


def gen(seed: int = SEED) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def linear(d_in: int, d_out: int, seed: int, scale: float = 1.0) -> torch.nn.Linear:
    layer = torch.nn.Linear(d_in, d_out).to(DT)
    g = gen(seed)
    with torch.no_grad():
        layer.weight.copy_(scale * torch.randn(d_out, d_in, generator=g, dtype=DT))
        layer.bias.copy_(0.1 * torch.randn(d_out, generator=g, dtype=DT))
    return layer


def make_batch(seed: int = SEED):
    """Three right-padded rows (B=3, L=9): prompt 0..2 / response 3..6 / pads; prompt 0..1 /
    response to the row end; prompt 0..3 / response 4..5 / pads. float64 hidden states."""
    g = gen(seed)
    b, length = 3, 9
    ids = torch.randint(0, V, (b, length), generator=g)
    am = torch.ones(b, length, dtype=torch.long)
    cm = torch.zeros(b, length, dtype=torch.long)
    cm[0, 3:7], am[0, 7:] = 1, 0
    cm[1, 2:] = 1
    cm[2, 4:6], am[2, 6:] = 1, 0
    hidden = torch.randn(b, length, D, generator=g, dtype=DT)
    return ids, am, cm, hidden


def attention_scores(hidden: torch.Tensor, heads: int = 2) -> torch.Tensor:
    """Unmasked scaled query–key scores (B, H, L, L), as the scores attention returns them."""
    g = gen(1)
    d = hidden.shape[-1]
    wq, wk = (torch.randn(heads, d, d, generator=g, dtype=hidden.dtype) for _ in range(2))
    q, k = (torch.einsum("bld,hde->bhle", hidden, w) for w in (wq, wk))
    return q @ k.transpose(-1, -2) / math.sqrt(d)


def causal_attention(hidden: torch.Tensor, am: torch.Tensor, heads: int = 2) -> torch.Tensor:
    """Post-softmax causal self-attention (B, H, L, L) as an eager HF layer returns it: padded keys
    masked, so valid query rows sum to 1 over valid keys; padded query rows are not all zero."""
    scores = attention_scores(hidden, heads)
    causal = torch.ones(hidden.shape[1], hidden.shape[1], dtype=torch.bool).tril()
    allowed = causal & am.bool()[:, None, None, :]
    return scores.masked_fill(~allowed, float("-inf")).softmax(-1)


def reward_head(hidden: torch.Tensor, rhead: torch.nn.Linear):
    out = rhead(hidden)
    return out[..., 0], F.softplus(out[..., 1]) + 1e-4


def random_terms(seed: int, *, shift: int = 1, weighted: bool = False, **kw):
    ids, am, cm, hidden = make_batch(seed)
    g = gen(seed + 100)
    q_sa = -2.0 + torch.randn(3, 8, generator=g, dtype=DT)
    mu = torch.randn(3, 9, generator=g, dtype=DT)
    sigma = 0.5 + torch.rand(3, 9, generator=g, dtype=DT)
    w = full_reward_weights(attention_scores(hidden), cm) if weighted else None
    terms = ava_token_terms(q_sa, mu, sigma, cm, shift=shift, weights=w, **kw)
    return terms, am, cm


# ---- Eq. 12: pretrained Q ----


@pytest.mark.parametrize("alpha", [1.0, 5.0, 10.0])
def test_ptq_q_is_normalised_and_bounded(alpha):
    logits = 6.0 * torch.randn(4, 5, V, generator=gen(), dtype=DT)
    logits[0, 0, 3] = 100.0  # a near one-hot row reaches the upper end
    q = ptq_q(logits, alpha=alpha)
    torch.testing.assert_close(torch.logsumexp(q, -1), torch.zeros(4, 5, dtype=DT))
    assert q.min() >= -math.log(V - 1 + math.exp(alpha)) - 1e-12
    assert q.max() <= alpha - math.log(V) + 1e-12
    p = logits.softmax(-1)  # within a state Q differs across tokens by α·Δp exactly
    torch.testing.assert_close(q - q[..., :1], alpha * (p - p[..., :1]))
    assert ptq_q(logits.bfloat16(), alpha=alpha).dtype == torch.float32


# ---- q_taken: chunked, recomputed, weighted ----


def reference_q(hidden, ids, head, *, alpha, beta, ptq, weights):
    q = head(hidden[:, :-1])  # (B, L-1, V), the unchunked way
    if ptq:
        q = ptq_q(q, alpha=alpha)
    if weights is not None:
        q = q * weights[:, :-1, None]
    lse = (beta * q).exp().sum(-1).log()
    return q.gather(-1, ids[:, 1:, None]).squeeze(-1), lse


def q_and_grads(fn, hidden, weights, head, coef):
    h = hidden.clone().requires_grad_(True)
    w = None if weights is None else weights.clone().requires_grad_(True)
    head.zero_grad()
    q_sa, lse = fn(h, w)
    ((coef[0] * q_sa).sum() + (coef[1] * lse).sum()).backward()
    grads = [h.grad, head.weight.grad.clone(), head.bias.grad.clone()]
    grads += [] if w is None else [w.grad]
    return [q_sa.detach(), lse.detach()], grads


@pytest.mark.parametrize("ptq", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_q_taken_chunked_equals_unchunked_reference(ptq, weighted):
    ids, am, cm, hidden = make_batch()
    head = linear(D, V, seed=2, scale=2.0)
    weights = full_reward_weights(attention_scores(hidden), cm) if weighted else None
    kw = dict(alpha=2.0, beta=0.7, ptq=ptq)
    coef = torch.randn(2, 3, 8, generator=gen(3), dtype=DT)
    want, want_g = q_and_grads(
        lambda h, w: reference_q(h, ids, head, weights=w, **kw), hidden, weights, head, coef
    )
    n_rows = 3 * 8
    for chunk in (1, 5, n_rows + 7):  # one row, a ragged split, a single chunk

        def run(h, w, chunk=chunk):
            return q_taken(h, ids, head, weights=w, need_lse=True, chunk_tokens=chunk, **kw)

        got, got_g = q_and_grads(run, hidden, weights, head, coef)
        assert got[0].dtype == DT and got[0].shape == (3, 8)
        for x, y in zip(got + got_g, want + want_g, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    with torch.no_grad():  # the no-grad path skips the checkpoint, same numbers
        q_sa, lse = q_taken(hidden, ids, head, weights=weights, chunk_tokens=5, **kw)
    assert lse is None
    torch.testing.assert_close(q_sa, want[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ptq", [True, False])
def test_q_taken_on_selected_rows_is_the_full_pass_there(ptq):
    ids, _, cm, hidden = make_batch()
    head = linear(D, V, seed=2, scale=2.0)
    weights = full_reward_weights(attention_scores(hidden), cm)
    rows = cm[:, 1:].bool()
    kw = dict(alpha=2.0, beta=0.7, ptq=ptq, need_lse=True, chunk_tokens=5)
    coef = torch.randn(2, 3, 8, generator=gen(3), dtype=DT) * rows  # a loss that reads the rows

    def full(h, w):
        return q_taken(h, ids, head, weights=w, **kw)

    def selected(h, w):
        return q_taken(h, ids, head, weights=w, rows=rows, **kw)

    want, want_g = q_and_grads(full, hidden, weights, head, coef)
    got, got_g = q_and_grads(selected, hidden, weights, head, coef)
    for x, y in zip(got, want, strict=True):
        torch.testing.assert_close(x[rows], y[rows], rtol=1e-12, atol=1e-12)
        assert torch.all(x[~rows] == 0)
    for x, y in zip(got_g, want_g, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_q_taken_without_the_normaliser_has_the_reference_gradient():
    ids, _, cm, hidden = make_batch()
    head = linear(D, V, seed=2, scale=2.0)
    weights = full_reward_weights(attention_scores(hidden), cm)
    coef = torch.randn(2, 3, 8, generator=gen(4), dtype=DT)
    coef[1] = 0.0

    def ref(h, w):
        return reference_q(h, ids, head, weights=w, alpha=2.0, beta=0.7, ptq=True)

    def only_q(h, w):
        q_sa, _ = q_taken(h, ids, head, weights=w, alpha=2.0, chunk_tokens=5)
        return q_sa, torch.zeros_like(q_sa)

    want, want_g = q_and_grads(ref, hidden, weights, head, coef)
    got, got_g = q_and_grads(only_q, hidden, weights, head, coef)
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
    for x, y in zip(got_g, want_g, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_q_taken_keeps_no_vocab_block_for_backward_and_upcasts():
    ids, _, _, hidden = make_batch()
    head = linear(D, V, seed=2)
    h = hidden.clone().requires_grad_(True)
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        q_taken(h, ids, head, need_lse=True, chunk_tokens=4)
    assert not any(len(s) == 2 and s[-1] == V for s in shapes), shapes  # no (rows, V) block
    q_sa, lse = q_taken(hidden.bfloat16(), ids, head.bfloat16(), need_lse=True, chunk_tokens=4)
    assert q_sa.dtype == lse.dtype == torch.float32


# ---- Eq. 11: reward weights ----


def test_causal_reward_weights_sum_to_one_over_valid_tokens_and_vanish_on_pads():
    ids, am, _, hidden = make_batch()
    attn = causal_attention(hidden, am, heads=3).requires_grad_(True)
    w = causal_reward_weights(attn, am, rescale=False)
    n_valid = am.sum(1).to(DT)
    torch.testing.assert_close(w.sum(1), torch.ones(3, dtype=DT))
    assert torch.all(w[am == 0] == 0) and torch.all(w[am == 1] > 0)
    for b in range(3):  # Eq. 11 literally: (1/|y|) Σ_{valid i} mean_h attn[b, h, i, t]
        n = int(n_valid[b])
        torch.testing.assert_close(w[b, :n], attn[b, :, :n, :n].mean(0).sum(0) / n)
    w_r = causal_reward_weights(attn, am)  # rescaled by default: mean 1 over valid tokens
    torch.testing.assert_close(w_r.sum(1), n_valid)
    torch.testing.assert_close(w_r, w * n_valid[:, None])
    w.sum().backward()  # not detached: gradients reach the attention probabilities
    assert attn.grad is not None and attn.grad.abs().sum() > 0


def test_full_reward_weights_are_eq11_over_the_response_only():
    """Every response query row is a softmax over all response keys, earlier and later; prompt
    and pads are neither queries nor keys; mean over heads and rows; Σ = 1, or mean 1."""
    ids, am, cm, hidden = make_batch()
    pad = ~am.bool()
    scores = attention_scores(hidden, heads=3).masked_fill(pad[:, None, :, None], float("inf"))
    scores = scores.masked_fill(pad[:, None, None, :], float("nan")).requires_grad_(True)  # junk
    w = full_reward_weights(scores, cm, rescale=False)
    n_resp = cm.sum(1).to(DT)
    torch.testing.assert_close(w.sum(1), torch.ones(3, dtype=DT))
    assert torch.all(w[cm == 0] == 0) and torch.all(w[cm == 1] > 0)
    for b in range(3):
        pos = cm[b].nonzero().flatten()
        block = scores[b][:, pos][:, :, pos]  # (H, |y|, |y|): response queries × response keys
        want = block.softmax(-1).mean(0).sum(0) / len(pos)
        torch.testing.assert_close(w[b, pos], want)
    w_r = full_reward_weights(scores, cm)  # the default: mean weight 1 over the response
    torch.testing.assert_close(w_r.sum(1), n_resp)
    torch.testing.assert_close(w_r, w * n_resp[:, None])
    # not causal: an earlier position's weight depends on a later key
    later = scores.detach().clone()
    later[0, :, :, 6] += 1.0
    assert full_reward_weights(later, cm)[0, 3] != w_r[0, 3]
    w_r[cm == 1].pow(2).sum().backward()  # not detached; nothing reaches prompt or pads
    assert torch.isfinite(scores.grad).all() and scores.grad.abs().sum() > 0
    outside = ~cm.bool()
    assert torch.all(scores.grad[outside[:, None, :, None].expand_as(scores)] == 0)
    assert torch.all(scores.grad[outside[:, None, None, :].expand_as(scores)] == 0)


def test_full_reward_weights_of_a_row_without_response_are_zero():
    _, _, cm, hidden = make_batch()
    cm = cm.clone()
    cm[1] = 0
    w = full_reward_weights(attention_scores(hidden), cm)
    assert torch.all(w[1] == 0) and torch.isfinite(w).all()


@pytest.mark.parametrize("shift", [0, 1])
def test_head_weights_give_token_k_weight_to_its_q_and_its_reward(shift):
    """attn_full: Q of token k (row k − 1) and its posterior (row k − 1 + shift) carry w_k;
    attn_causal: both heads are scaled at their own positions; none: no weights."""
    _, am, cm, hidden = make_batch()
    scores = attention_scores(hidden)
    w = full_reward_weights(scores, cm)
    w_q, w_mu = head_weights(scores, am, cm, rwt="attn_full", shift=shift)
    torch.testing.assert_close(w_q[:, :-1], w[:, 1:])
    assert torch.all(w_q[:, -1] == 0)
    torch.testing.assert_close(w_mu, w if shift == 1 else w_q)
    mu = torch.randn(3, 9, generator=gen(8), dtype=DT)
    r = token_rewards(mu * w_mu, cm, shift=shift)  # the dense reward of token k is w_k·μ(k)
    torch.testing.assert_close(r, w * token_rewards(mu, cm, shift=shift))
    attn = causal_attention(hidden, am)
    c_q, c_mu = head_weights(attn, am, cm, rwt="attn_causal", shift=shift, rescale=False)
    torch.testing.assert_close(c_q, causal_reward_weights(attn, am, rescale=False))
    assert c_mu is c_q
    assert head_weights(None, am, cm, rwt="none", shift=shift) == (None, None)
    with pytest.raises(ValueError, match="rwt"):
        head_weights(scores, am, cm, rwt="attn")


# ---- Eq. 6 and the Gaussian density ----


def test_gaussian_closed_forms_match_torch_distributions():
    g = gen()
    mu, x = torch.randn(50, generator=g, dtype=DT), torch.randn(50, generator=g, dtype=DT)
    sigma = 0.1 + torch.rand(50, generator=g, dtype=DT) * 3
    torch.testing.assert_close(gaussian_log_density(x, mu, sigma), Normal(mu, sigma).log_prob(x))
    want_kl = kl_divergence(Normal(mu, sigma), Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    torch.testing.assert_close(kl_to_std_normal(mu, sigma), want_kl)
    zero, one = torch.zeros(1, dtype=DT), torch.ones(1, dtype=DT)
    assert kl_to_std_normal(zero, one).item() == 0.0
    assert torch.all(kl_to_std_normal(mu, sigma) >= 0)
    # log q(δ) is maximised at δ = μ: zero slope there, lower everywhere else on a grid
    at_mu = mu.clone().requires_grad_(True)
    peak = gaussian_log_density(at_mu, mu, sigma)
    peak.sum().backward()
    assert at_mu.grad.abs().max() < 1e-12
    grid = mu[:, None] + torch.linspace(-3, 3, 61, dtype=DT)
    assert torch.all(gaussian_log_density(grid, mu[:, None], sigma[:, None]) <= peak[:, None])


# ---- per-token terms ----


def test_masks_exclude_prompt_pad_first_position_and_terminal_transition():
    terms, _, cm = random_terms(SEED)
    assert terms.ll.shape == terms.ll_mask.shape == (3, 8)
    assert terms.delta.shape == terms.td_mask.shape == terms.logq.shape == (3, 7)
    assert terms.ll_mask.dtype == terms.td_mask.dtype == torch.bool
    assert torch.equal(terms.ll_mask, cm[:, 1:].bool())
    # action index j scores token j + 1: row 0's response is tokens 3..6, row 2's tokens 4..5
    assert terms.ll_mask[0].nonzero().flatten().tolist() == [2, 3, 4, 5]
    assert terms.td_mask[0].nonzero().flatten().tolist() == [2, 3, 4]
    assert terms.td_mask[1].nonzero().flatten().tolist() == list(range(1, 7))
    assert terms.td_mask[2].nonzero().flatten().tolist() == [3]
    cm_first = cm.clone()
    cm_first[:, 0] = 1  # token 0 is never an action, whatever the mask says
    again = ava_token_terms(terms.ll, terms.mu, terms.sigma, cm_first)
    assert torch.equal(again.ll_mask, terms.ll_mask) and torch.equal(again.td_mask, terms.td_mask)
    paper, _, _ = random_terms(SEED, paper_ll_range=True)
    assert torch.equal(paper.ll_mask, paper.td_mask) and paper.ll.shape == (3, 7)
    torch.testing.assert_close(paper.ll, terms.ll[:, :-1])


@pytest.mark.parametrize("shift", [0, 1])
@pytest.mark.parametrize("weighted", [False, True])
def test_token_terms_position_by_position(shift, weighted):
    ids, am, cm, hidden = make_batch()
    g = gen(5)
    q_sa, lse = -2.0 + torch.randn(2, 3, 8, generator=g, dtype=DT)
    mu = torch.randn(3, 9, generator=g, dtype=DT)
    sigma = 0.5 + torch.rand(3, 9, generator=g, dtype=DT)
    w = (
        full_reward_weights(attention_scores(hidden), cm)
        if weighted
        else torch.ones(3, 9, dtype=DT)
    )
    beta, gamma = 0.7, 0.9
    t = ava_token_terms(
        q_sa, mu, sigma, cm, beta=beta, gamma=gamma, shift=shift, lse=lse,
        weights=w if weighted else None,
    )  # fmt: skip
    for b in range(3):
        for j in range(7):
            m, s = w[b, j + shift] * mu[b, j + shift], w[b, j + shift] * sigma[b, j + shift]
            m, s = float(m), max(float(s), 1e-6)
            delta = float(q_sa[b, j] - gamma * q_sa[b, j + 1])
            logq = -0.5 * math.log(2 * math.pi) - math.log(s) - (delta - m) ** 2 / (2 * s * s)
            kl = 0.5 * (m * m + s * s - 1) - math.log(s)
            assert t.delta[b, j].item() == pytest.approx(delta, rel=1e-12)
            assert t.logq[b, j].item() == pytest.approx(logq, rel=1e-10)
            assert t.kl[b, j].item() == pytest.approx(kl, rel=1e-10, abs=1e-12)
    torch.testing.assert_close(t.ll, beta * q_sa - lse)
    torch.testing.assert_close(t.mu, w * mu)
    assert torch.all(t.sigma >= 1e-6)


def test_ava_d_loss_is_the_negated_token_mean_objective():
    terms, _, _ = random_terms(SEED, weighted=True, lse=torch.randn(3, 8, dtype=DT))
    loss, metrics = ava_d_loss(terms, lam=0.5)
    lik = terms.ll[terms.ll_mask].mean()
    kl, logq = terms.kl[terms.td_mask].mean(), terms.logq[terms.td_mask].mean()
    torch.testing.assert_close(loss, -(lik - kl + 0.5 * logq))
    torch.testing.assert_close(metrics["loss/likelihood"], lik)
    torch.testing.assert_close(metrics["loss/kl"], kl)
    torch.testing.assert_close(metrics["loss/td_logq"], logq)
    torch.testing.assert_close(metrics["reward/mu_mean"], terms.mu_td[terms.td_mask].mean())
    torch.testing.assert_close(metrics["reward/sigma_mean"], terms.sigma_td[terms.td_mask].mean())
    assert metrics["loss/total"] == loss


# ---- AVA-p (Eqs. 17-18) ----


def scores(terms, am):
    return last_token_score(terms.mu, am)


@pytest.mark.parametrize("shift", [0, 1])
def test_swapping_chosen_and_rejected_flips_the_likelihood_part(shift):
    c, am_c, _ = random_terms(SEED, shift=shift)
    r, am_r, _ = random_terms(SEED + 1, shift=shift)
    _, m1 = ava_p_loss(c, r, scores(c, am_c), scores(r, am_r))
    _, m2 = ava_p_loss(r, c, scores(r, am_r), scores(c, am_c))
    assert m1["loss/likelihood"] != 0
    torch.testing.assert_close(m1["loss/likelihood"], -m2["loss/likelihood"])
    torch.testing.assert_close(m1["loss/irl"], m2["loss/irl"])  # symmetric with td_on_rejected
    torch.testing.assert_close(m1["loss/cer"], 1 - m2["loss/cer"])


def test_identical_pair_reduces_to_twice_the_irl_term_plus_half():
    t, am, _ = random_terms(SEED, weighted=True)
    s = scores(t, am)
    lam = 0.5
    loss, m = ava_p_loss(t, t, s, s, lam=lam, cer_coef=1.0, td_on_rejected=True)
    f_irl_seq = lam * t.logq[t.td_mask].mean() - t.kl[t.td_mask].mean()
    assert m["loss/likelihood"] == 0 and m["loss/cer"] == 0.5
    torch.testing.assert_close(loss, -(2 * f_irl_seq + 0.5))
    torch.testing.assert_close(m["loss/irl"], 2 * f_irl_seq)
    assert m["rewards/accuracy"] == 0 and m["rewards/margin"] == 0
    log_loss, m_log = ava_p_loss(t, t, s, s, lam=lam, cer_log=True)
    torch.testing.assert_close(m_log["loss/cer"], torch.tensor(math.log(0.5), dtype=DT))


def test_ava_p_ablation_switches():
    c, am_c, _ = random_terms(SEED)
    r, am_r, _ = random_terms(SEED + 1)
    sc, sr = scores(c, am_c), scores(r, am_r)
    lik_c, lik_r = c.ll[c.ll_mask].mean(), r.ll[r.ll_mask].mean()
    irl_c = 2.0 * c.logq[c.td_mask].mean() - c.kl[c.td_mask].mean()
    irl_r = 2.0 * r.logq[r.td_mask].mean() - r.kl[r.td_mask].mean()
    cer = torch.sigmoid(sc - sr).mean()
    loss, m = ava_p_loss(c, r, sc, sr, lam=2.0, cer_coef=0.3)
    torch.testing.assert_close(loss, -(lik_c - lik_r + irl_c + irl_r + 0.3 * cer))
    assert all(not v.requires_grad for v in m.values())
    torch.testing.assert_close(m["rewards/accuracy"], (sc > sr).float().mean())
    torch.testing.assert_close(m["rewards/margin"], (sc - sr).mean())
    no_neg = ava_p_loss(c, r, sc, sr, lam=2.0, cer_coef=0.3, use_neg=False)[0]
    torch.testing.assert_close(no_neg, -(lik_c + irl_c + irl_r + 0.3 * cer))
    no_irl = ava_p_loss(c, r, sc, sr, lam=2.0, cer_coef=0.3, use_irl=False)[0]
    torch.testing.assert_close(no_irl, -(lik_c - lik_r + 0.3 * cer))
    chosen_td = ava_p_loss(c, r, sc, sr, lam=2.0, cer_coef=0.3, td_on_rejected=False)[0]
    torch.testing.assert_close(chosen_td, -(lik_c - lik_r + irl_c + 0.3 * cer))


@pytest.mark.parametrize("rwt", ["attn_full", "attn_causal"])
def test_gradients_finite_with_rwt_shift1_and_a_padded_row(rwt):
    ids, am, cm, hidden = make_batch()
    hidden = hidden.clone()
    hidden[am == 0] = 1e3  # junk at pads must not leak
    h = hidden.requires_grad_(True)
    head, rhead = linear(D, V, seed=2), linear(D, 2, seed=3)
    ids_r = torch.randint(0, V, ids.shape, generator=gen(4))  # same layout, other tokens

    def terms(ids, am, cm, rwt):
        attn = attention_scores(h) if rwt == "attn_full" else causal_attention(h, am)
        w_q, w = head_weights(attn, am, cm, rwt=rwt, shift=1)
        q_sa, lse = q_taken(h, ids, head, weights=w_q, need_lse=True, chunk_tokens=5)
        mu, sigma = reward_head(h, rhead)
        return ava_token_terms(q_sa, mu, sigma, cm, shift=1, weights=w, lse=lse), w

    (c, w_c), (r, _) = terms(ids, am, cm, rwt), terms(ids_r, am, cm, rwt)
    assert torch.all(w_c[am == 0] == 0)
    loss, _ = ava_p_loss(c, r, last_token_score(c.mu, am), last_token_score(r.mu, am))
    loss.backward()
    params = [h, head.weight, head.bias, rhead.weight, rhead.bias]
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in params)
    assert rhead.weight.grad.abs().sum() > 0 and head.weight.grad.abs().sum() > 0
    assert torch.all(h.grad[am == 0] == 0)  # nothing reaches the padded positions


# ---- rewards for scoring and PPO ----


def test_token_rewards_and_last_token_score():
    _, am, cm, _ = make_batch()
    mu = torch.arange(27, dtype=DT).reshape(3, 9)
    r1, r0 = token_rewards(mu, cm, shift=1), token_rewards(mu, cm, shift=0)
    assert r1[0].tolist() == [0, 0, 0, 3, 4, 5, 6, 0, 0]
    assert r0[0].tolist() == [0, 0, 0, 2, 3, 4, 5, 0, 0]
    assert r1[2].tolist() == [0, 0, 0, 0, 22, 23, 0, 0, 0]
    assert torch.all(r1[cm == 0] == 0) and torch.all(r0[cm == 0] == 0)
    torch.testing.assert_close(r1[cm == 1], mu[cm == 1])
    torch.testing.assert_close(r0[:, 1:][cm[:, 1:] == 1], mu[:, :-1][cm[:, 1:] == 1])
    assert last_token_score(mu, am).tolist() == [6, 17, 23]
    # shift 0: the final token's reward sits one position earlier, as token_rewards reads it
    assert last_token_score(mu, am, shift=0).tolist() == [5, 16, 22]
    for shift, r in ((1, r1), (0, r0)):
        last = am.sum(1) - 1
        torch.testing.assert_close(last_token_score(mu, am, shift=shift), r[torch.arange(3), last])
    with pytest.raises(ValueError, match="shift"):
        last_token_score(mu, am, shift=2)
    with pytest.raises(ValueError, match="shift"):
        token_rewards(mu, cm, shift=2)


@pytest.mark.parametrize("shift", [0, 1])
@pytest.mark.parametrize("weighted", [False, True])
def test_summed_score_is_the_posterior_mean_of_the_scored_transitions(shift, weighted):
    """AVA-d's sequence score: Σ of the (w-scaled) posterior means its TD and KL terms score,
    i.e. the dense rewards of every response token but the last, which has no transition."""
    terms, am, cm = random_terms(SEED, shift=shift, weighted=weighted)
    s = summed_score(terms.mu, cm, shift=shift)
    want = torch.where(terms.td_mask, terms.mu_td, torch.zeros_like(terms.mu_td)).sum(1)
    torch.testing.assert_close(s, want)
    r = token_rewards(terms.mu, cm, shift=shift)
    last = am.sum(1) - 1  # every response here runs to the row's last real token
    torch.testing.assert_close(s, r.sum(1) - r[torch.arange(3), last])
    # it reads no posterior outside the scored transitions: the last-token score is not in it
    bumped = terms.mu.clone()
    bumped[torch.arange(3), last - (1 - shift)] += 100.0
    torch.testing.assert_close(summed_score(bumped, cm, shift=shift), s)
    assert torch.all(
        last_token_score(bumped, am, shift=shift) != last_token_score(terms.mu, am, shift=shift)
    )


# ---- AVRIL equivalence (official code form) ----


def avril_reference_loss(q_table, encoder, trajectories):
    """AVRIL's `elbo` restated (sbirl/models.py): consecutive (s, a, s', a') within each
    trajectory, td = Q[s, a] − Q[s', a'], state-only encoder on s, equal-weight batch means."""
    quads = [
        (states[t], actions[t], states[t + 1], actions[t + 1])
        for states, actions in trajectories
        for t in range(len(states) - 1)
    ]
    s, a, s2, a2 = (torch.tensor(x) for x in zip(*quads, strict=True))
    rows = torch.arange(len(quads))
    q = q_table[s]
    td = q[rows, a] - q_table[s2][rows, a2]
    mean, log_sd = encoder(s).unbind(-1)
    irl_loss = -Normal(mean, log_sd.exp()).log_prob(td).mean()
    var = log_sd.exp() ** 2
    kl = (0.5 * (-torch.log(var) - 1 + var + mean**2)).mean()
    nll = -torch.log_softmax(q, dim=-1)[rows, a].mean()
    return nll + kl + irl_loss


def test_ava_d_equals_avril_on_a_tabular_problem():
    """Fresh Q head, β = λ = γ = 1, no rwt: one-hot states make nn.Linear a Q table and the
    reward head AVRIL's state-only encoder. AVRIL reads the encoder at s (shift=0), has no
    transition out of the last step (paper range) and an exact Boltzmann policy (ll = q − lse)."""
    n_states, n_actions = 5, 4
    g = gen(7)
    lengths = [5, 3, 4]
    trajectories = [
        (torch.randint(0, n_states, (n,), generator=g).tolist(),
         torch.randint(0, n_actions, (n,), generator=g).tolist())
        for n in lengths
    ]  # fmt: skip
    length = max(lengths) + 1  # BOS/start position + one position per action
    hidden = torch.randn(3, length, n_states, generator=g, dtype=DT)  # junk where unused
    ids = torch.zeros(3, length, dtype=torch.long)
    cm = torch.zeros(3, length, dtype=torch.long)
    for b, (states, actions) in enumerate(trajectories):
        hidden[b, : len(states)] = F.one_hot(torch.tensor(states), n_states).to(DT)
        ids[b, 1 : len(actions) + 1] = torch.tensor(actions)
        cm[b, 1 : len(actions) + 1] = 1
    qhead = torch.nn.Linear(n_states, n_actions, bias=False).to(DT)  # weight.T is the Q table
    with torch.no_grad():
        qhead.weight.copy_(1.5 * torch.randn(n_actions, n_states, generator=g, dtype=DT))
    rhead = linear(n_states, 2, seed=9)

    q_sa, lse = q_taken(hidden, ids, qhead, ptq=False, need_lse=True, chunk_tokens=4)
    out = rhead(hidden)
    terms = ava_token_terms(
        q_sa, out[..., 0], out[..., 1].exp(), cm, shift=0, lse=lse, paper_ll_range=True
    )
    ours, _ = ava_d_loss(terms, lam=1.0)
    params = [qhead.weight, rhead.weight, rhead.bias]
    ours_g = torch.autograd.grad(ours, params)

    def encoder(s):
        return rhead(F.one_hot(s, n_states).to(DT))

    ref = avril_reference_loss(qhead.weight.T, encoder, trajectories)
    ref_g = torch.autograd.grad(ref, params)
    assert abs(ours.item() - ref.item()) < 1e-10
    for x, y in zip(ours_g, ref_g, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-10)
