"""irlalign.losses.iqlearn and sft: λ = 0 is SFT, Garg's χ² identity, telescoping, truncation,
shift invariance, the closed-form gradient, and the entropy baseline."""

from __future__ import annotations

import pytest
import torch

from irlalign.losses import (
    causal_logps,
    implicit_rewards,
    iq_terms,
    iqlearn_offline_loss,
    sequence_rewards,
    sft_entropy_loss,
    sft_loss,
    token_stats,
)
from irlalign.losses.iqlearn import iqlearn_online_expert_loss, iqlearn_online_policy_loss

SEED = 0
V, D, EOS = 11, 8, 2
IDENTITY = torch.nn.Identity()


def make_batch(pad_id: int = 0):
    """Right-padded (B=3, L=10) ids and completion mask: row 0 ends in EOS at position 6, row 1 is
    truncated at the end of the row, row 2 is truncated at position 6 and then padded."""
    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(3, V, (3, 10), generator=g)
    cm = torch.zeros(3, 10, dtype=torch.long)
    cm[0, 3:7], cm[1, 2:], cm[2, 4:7] = 1, 1, 1
    ids[0, 6] = EOS
    ids[0, 7:] = pad_id
    ids[2, 7:] = pad_id
    return ids, cm


def random_logits(dtype=torch.float64, requires_grad=False):
    g = torch.Generator().manual_seed(SEED + 1)
    return (3.0 * torch.randn(3, 10, V, generator=g, dtype=dtype)).requires_grad_(requires_grad)


def terms(logits, ids, cm, *, gamma=0.9, drop=False):
    return iq_terms(logits, ids, cm, IDENTITY, eos_id=EOS, gamma=gamma, drop_truncated=drop)


# ------------------------------------------------------------------------------ λ = 0 is SFT


@pytest.mark.parametrize("num_items", [None, 13.0])
def test_lam_zero_is_bitwise_sft_loss_and_gradients(num_items):
    ids, cm = make_batch()
    g = torch.Generator().manual_seed(SEED)
    hidden = torch.randn(3, 10, D, generator=g)
    head = torch.nn.Linear(D, V, bias=False)
    h_sft, h_iq = hidden.clone().requires_grad_(True), hidden.clone().requires_grad_(True)

    logp, mask = causal_logps(h_sft, ids, cm, head, chunk_tokens=7)
    sft, _ = sft_loss(logp, mask, num_items=num_items)
    sft.backward()
    gw_sft = head.weight.grad.clone()
    head.zero_grad()

    t = iq_terms(h_iq, ids, cm, head, eos_id=EOS, gamma=0.9, chunk_tokens=7)
    iq, metrics = iqlearn_offline_loss(
        t.logp, t.r_hat, t.mask, t.td_mask, lam=0.0, num_items=num_items
    )
    iq.backward()
    assert metrics["loss/td"] > 0  # the TD term is there, just weighted by 0
    assert torch.equal(iq, sft)
    assert torch.equal(h_iq.grad, h_sft.grad)
    assert torch.equal(head.weight.grad, gw_sft)


def test_offline_loss_by_hand_and_metrics():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.25, -4.0, -1.0]])
    r = torch.tensor([[1.0, -2.0, 3.0], [0.5, 10.0, -1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    td = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    loss, m = iqlearn_offline_loss(logp, r, mask, td, lam=0.1)
    mle, tdv = (1.0 + 2.0 + 0.5 + 0.25) / 4, (1.0 + 4.0 + 0.25) / 4
    assert m["loss/mle"].item() == pytest.approx(mle)
    assert m["loss/td"].item() == pytest.approx(tdv)
    assert loss.item() == pytest.approx(mle + 0.1 * tdv)
    assert m["loss/total"].item() == pytest.approx(loss.item())
    assert m["iq/r_hat"].item() == pytest.approx((1.0 - 2.0 + 0.5) / 3)
    sft, _ = sft_loss(logp, mask)
    assert sft.item() == pytest.approx(mle)


# ------------------------------------------------------------- Garg's χ² "value_expert" objective


def garg_chi2_value_expert(logits, ids, cm, *, gamma, alpha_g):
    """IQ-Learn's χ² objective with the value_expert second term, written out transition by
    transition: J = mean[r − r²/(4α_G)] − mean[V(s) − γV(s')], r = Q(s,a) − γV(s')."""
    phi, value = [], []
    for b in range(ids.shape[0]):
        positions = [t for t in range(ids.shape[1] - 1) if cm[b, t + 1]]
        first_eos = next((t for t in positions if ids[b, t + 1] == EOS), None)
        for t in positions:
            q = logits[b, t, ids[b, t + 1]]
            v_s = torch.logsumexp(logits[b, t], -1)
            v_next = 0.0 if t == first_eos else torch.logsumexp(logits[b, t + 1], -1)
            r = q - gamma * v_next
            phi.append(r - r**2 / (4 * alpha_g))
            value.append(v_s - gamma * v_next)
    return torch.stack(phi).mean() - torch.stack(value).mean()


@pytest.mark.parametrize("lam", [1.0, 0.1])
def test_eq14_equals_minus_garg_chi2_objective(lam):
    ids, cm = make_batch()
    logits = random_logits()
    t = terms(logits, ids, cm, gamma=0.9)
    loss, _ = iqlearn_offline_loss(t.logp, t.r_hat, t.mask, t.td_mask, lam=lam)
    j = garg_chi2_value_expert(logits, ids, cm, gamma=0.9, alpha_g=1 / (4 * lam))
    assert loss.item() == pytest.approx(-j.item(), abs=1e-6, rel=1e-6)


# ---------------------------------------------------------------------------- telescoping


def test_telescoping_gamma_one():
    ids, cm = make_batch()
    logits = random_logits()
    t = terms(logits, ids, cm, gamma=1.0)
    s = sequence_rewards(t.logp, t.r_hat, t.v, t.mask, gamma=1.0)
    v_all = torch.logsumexp(logits, -1).float()
    v0 = v_all[torch.arange(3), cm.argmax(1) - 1]  # value at the last prompt position
    torch.testing.assert_close(s["v0"], v0)
    # row 0 ends in EOS: Σ r = log π(y|x) + V(s0)
    torch.testing.assert_close(
        s["sequence_reward"][0], s["sequence_logp"][0] + v0[0], rtol=1e-6, atol=1e-5
    )
    # rows 1, 2 are truncated and bootstrapped: Σ r = log π(y|x) + V(s0) − V(s_{T+1})
    v_end = torch.stack([v_all[1, 9], v_all[2, 6]])
    want = s["sequence_logp"][1:] + v0[1:] - v_end
    torch.testing.assert_close(s["sequence_reward"][1:], want, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(s["sequence_reward_discounted"], s["sequence_reward"])


def test_sequence_rewards_discounting_by_hand():
    r = torch.tensor([[9.0, 1.0, 2.0, 3.0, 9.0]])
    mask = torch.tensor([[0, 1, 1, 1, 0]], dtype=torch.bool)
    v = torch.tensor([[5.0, 7.0, 1.0, 1.0, 1.0]])
    s = sequence_rewards(torch.zeros_like(r), r, v, mask, gamma=0.5)
    assert s["sequence_reward"].item() == 6.0
    assert s["sequence_reward_discounted"].item() == 1.0 + 0.5 * 2.0 + 0.25 * 3.0
    assert s["v0"].item() == 7.0


# ---------------------------------------------------------------------- terminal / truncation


def test_implicit_rewards_zero_value_after_terminal():
    logp = torch.tensor([[-1.0, -2.0]])
    v, v_next = torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, 6.0]])
    terminal = torch.tensor([[False, True]])
    r, vn = implicit_rewards(logp, v, v_next, terminal, gamma=0.5)
    assert vn.tolist() == [[4.0, 0.0]]
    assert r.tolist() == [[3.0 - 1.0 - 2.0, 4.0 - 2.0]]


def test_truncation_bootstrap_and_drop():
    ids, cm = make_batch()
    logits = random_logits()
    v_all = torch.logsumexp(logits, -1).float()
    boot = terms(logits, ids, cm)
    drop = terms(logits, ids, cm, drop=True)
    # bootstrap: the last TD term of a truncated row uses V at the next position (non-zero)
    assert boot.truncated.nonzero().tolist() == [[1, 8], [2, 5]]
    for b, t in ((1, 8), (2, 5)):
        assert boot.v_next[b, t] == v_all[b, t + 1] != 0
    assert boot.v_next[0, 5] == 0  # the EOS action
    # drop: exactly one TD term fewer per truncated row, MLE unchanged
    assert torch.equal(drop.mask, boot.mask)
    assert (boot.td_mask.sum(1) - drop.td_mask.sum(1)).tolist() == [0, 1, 1]
    assert torch.equal(boot.td_mask & ~drop.td_mask, boot.truncated)
    lb, mb = iqlearn_offline_loss(boot.logp, boot.r_hat, boot.mask, boot.td_mask, lam=1.0)
    ld, md = iqlearn_offline_loss(drop.logp, drop.r_hat, drop.mask, drop.td_mask, lam=1.0)
    assert torch.equal(mb["loss/mle"], md["loss/mle"])
    n = boot.mask.sum()
    removed = (boot.r_hat[boot.truncated] ** 2).sum() / n
    torch.testing.assert_close(mb["loss/td"] - md["loss/td"], removed)


def test_shift_invariance_gamma_one():
    ids, cm = make_batch()
    logits = random_logits()
    c = 7.25
    a = terms(logits, ids, cm, gamma=1.0)
    b = terms(logits + c, ids, cm, gamma=1.0)
    diff = (b.r_hat - a.r_hat)[a.mask]
    expected = torch.where(a.terminal[a.mask], c, 0.0)
    torch.testing.assert_close(diff, expected.float(), rtol=0, atol=1e-5)
    torch.testing.assert_close(b.logp, a.logp, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------- gradient structure


def test_gradient_matches_closed_form():
    ids, cm = make_batch()
    logits = random_logits(dtype=torch.float32, requires_grad=True)
    lam, gamma = 0.7, 0.9
    t = terms(logits, ids, cm, gamma=gamma)
    loss, _ = iqlearn_offline_loss(t.logp, t.r_hat, t.mask, t.td_mask, lam=lam)
    loss.backward()
    n = t.mask.sum()
    w, u, r = t.mask / n, t.td_mask / n, t.r_hat.detach()
    zero_col = torch.zeros(3, 1)
    d = torch.cat([2 * lam * u * r - w, zero_col], 1)  # ∂L/∂q_j
    prev = 2 * lam * gamma * u * r * (~t.terminal)  # TD of a_{j-1} through V(s_j)
    c = torch.cat([w, zero_col], 1) - torch.cat([zero_col, prev], 1)  # ∂L/∂v_j
    actions = torch.cat([ids[:, 1:], torch.zeros_like(ids[:, :1])], 1)
    onehot = torch.nn.functional.one_hot(actions, V).float()
    expected = c[..., None] * torch.softmax(logits.detach(), -1) + d[..., None] * onehot
    torch.testing.assert_close(logits.grad, expected, rtol=1e-5, atol=1e-7)


# -------------------------------------------------------------------------- entropy baseline


def test_sft_entropy_loss():
    ids, cm = make_batch()
    logits = random_logits(dtype=torch.float32)
    actions = torch.cat([ids[:, 1:], torch.zeros_like(ids[:, :1])], 1)
    _, _, ent_all = token_stats(logits, actions, IDENTITY, with_entropy=True)
    logp, mask, ent = causal_logps(logits, ids, cm, IDENTITY, with_entropy=True)
    assert torch.equal(ent, ent_all[:, :-1])
    sft, _ = sft_loss(logp, mask)
    zero, m0 = sft_entropy_loss(logp, ent, mask, beta=0.0)
    assert torch.equal(zero, sft)
    loss, m = sft_entropy_loss(logp, ent, mask, beta=0.1)
    p = torch.softmax(logits[:, :-1], -1)
    h = -(p * p.log()).sum(-1)
    mean_h = h[mask].mean()
    torch.testing.assert_close(m["policy/entropy"], mean_h)
    torch.testing.assert_close(loss, sft - 0.1 * mean_h)
    assert set(m) == {"loss/total", "loss/mle", "policy/entropy"}


def test_temperature_tau_matches_the_soft_value_formula():
    """τ ≠ 1 (an ablation): V = τ·LSE(Q/τ), log π = log_softmax(Q/τ), r = Q(s,a) − γ·V(s')."""
    from irlalign.losses import iq_terms

    torch.manual_seed(0)
    vocab, eos = 7, 2
    head = torch.nn.Linear(5, vocab, bias=False).double()
    hidden = torch.randn(2, 6, 5, dtype=torch.float64)
    ids = torch.tensor([[1, 4, 5, 3, eos, 0], [1, 3, 4, 5, 6, 3]])
    cmask = torch.tensor([[0, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]])
    tau, gamma = 2.0, 0.9
    t = iq_terms(hidden, ids, cmask, head, eos_id=eos, gamma=gamma, tau=tau)
    logits = head(hidden).float()
    v_all = tau * torch.logsumexp(logits / tau, -1)
    q = logits[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    logp = torch.log_softmax(logits[:, :-1] / tau, -1).gather(-1, ids[:, 1:, None])[..., 0]
    v_next = torch.where(t.terminal, torch.zeros_like(q), v_all[:, 1:])
    m = t.mask
    torch.testing.assert_close(t.logp[m], logp[m], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t.r_hat[m], (q - gamma * v_next)[m], rtol=1e-5, atol=1e-5)
    same = iq_terms(hidden, ids, cmask, head, eos_id=eos, gamma=gamma, tau=1.0)
    plain = iq_terms(hidden, ids, cmask, head, eos_id=eos, gamma=gamma)
    assert torch.equal(same.r_hat, plain.r_hat)


# ------------------------------------------------------------ online IQLearn (the reconstruction)


def online_losses(expert, policy, *, lam, mix_in, gamma, value_diff=True, num_items=None):
    kw = {"lam": lam, "mix_in": mix_in, "gamma": gamma, "value_diff": value_diff}
    e, p = expert, policy
    le, me = iqlearn_online_expert_loss(
        e.logp, e.r_hat, e.v, e.v_next, e.mask, e.td_mask, num_items=num_items, **kw
    )
    lp, mp = iqlearn_online_policy_loss(p.r_hat, p.v, p.v_next, p.mask, p.td_mask, **kw)
    return le, me, lp, mp


def policy_batch():
    """A second right-padded batch standing in for the policy's samples: row 0 ends in EOS,
    rows 1 and 2 hit the length budget (truncated, not terminal)."""
    ids, cm = make_batch()
    g = torch.Generator().manual_seed(SEED + 5)
    ids = torch.randint(3, V, ids.shape, generator=g)
    ids[0, 4], ids[0, 5:] = EOS, 0
    cm = torch.zeros_like(cm)
    cm[0, 2:5], cm[1, 3:], cm[2, 1:8] = 1, 1, 1
    return ids, cm


@pytest.mark.parametrize("num_items", [None, 13.0])
def test_online_mix_in_zero_is_bitwise_offline(num_items):
    ids, cm = make_batch()
    pids, pcm = policy_batch()
    g = torch.Generator().manual_seed(SEED)
    hidden = torch.randn(3, 10, D, generator=g)
    head = torch.nn.Linear(D, V, bias=False)
    h_off, h_on = hidden.clone().requires_grad_(True), hidden.clone().requires_grad_(True)

    t = iq_terms(h_off, ids, cm, head, eos_id=EOS, gamma=0.9)
    offline, _ = iqlearn_offline_loss(
        t.logp, t.r_hat, t.mask, t.td_mask, lam=0.3, num_items=num_items
    )
    offline.backward()
    gw_off = head.weight.grad.clone()
    head.zero_grad()

    e = iq_terms(h_on, ids, cm, head, eos_id=EOS, gamma=0.9)
    p = iq_terms(torch.randn(3, 10, D, generator=g), pids, pcm, head, eos_id=EOS, gamma=0.9)
    le, me, lp, mp = online_losses(e, p, lam=0.3, mix_in=0.0, gamma=0.9, num_items=num_items)
    total = le + lp
    total.backward()
    assert mp["loss/td_policy"] > 0 and me["iq/value_expert"] != 0  # the terms are there
    assert torch.equal(total, offline)
    assert torch.equal(h_on.grad, h_off.grad)
    assert torch.equal(head.weight.grad, gw_off)


def test_online_td_weighting_by_hand():
    """λ·(1−α) on expert TD, λ·α on policy TD, MLE on expert tokens only (value term off)."""
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.25, -4.0, -1.0]])
    r = torch.tensor([[1.0, -2.0, 3.0], [0.5, 10.0, -1.0]])
    zeros = torch.zeros_like(r)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    td = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    p_r = torch.tensor([[2.0, 1.0, 7.0]])
    p_mask = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    lam, a = 0.2, 0.25
    kw = {"lam": lam, "mix_in": a, "gamma": 1.0, "value_diff": False}
    le, me = iqlearn_online_expert_loss(logp, r, zeros, zeros, mask, td, **kw)
    lp, mp = iqlearn_online_policy_loss(p_r, p_r * 0, p_r * 0, p_mask, p_mask, **kw)
    mle, td_e, td_p = (1.0 + 2.0 + 0.5 + 0.25) / 4, (1.0 + 4.0 + 0.25) / 4, (4.0 + 1.0) / 2
    assert me["loss/mle"].item() == pytest.approx(mle)
    assert me["loss/td"].item() == pytest.approx(td_e)
    assert mp["loss/td_policy"].item() == pytest.approx(td_p)
    assert le.item() == pytest.approx(mle + lam * (1 - a) * td_e)
    assert lp.item() == pytest.approx(lam * a * td_p)  # no MLE term on the samples
    assert mp["iq/r_hat_policy"].item() == pytest.approx(1.5)


def test_online_value_difference_by_hand():
    """α·(E_π[V − γV'] − E_E[V − γV']) on a tiny example; V' = 0 after the EOS."""
    gamma, a = 0.5, 0.1
    # expert: one row, 3 actions, the last is the EOS (v_next already zeroed there)
    v_e = torch.tensor([[4.0, 3.0, 2.0]])
    vn_e = torch.tensor([[3.0, 2.0, 0.0]])
    m_e = torch.ones(1, 3, dtype=torch.bool)
    # policy: two rows; row 1 truncated after 1 action, bootstrapping from V = 6
    v_p = torch.tensor([[1.0, 2.0], [5.0, 9.0]])
    vn_p = torch.tensor([[2.0, 0.0], [6.0, 9.0]])
    m_p = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    zeros_e, zeros_p = torch.zeros(1, 3), torch.zeros(2, 2)
    kw = {"lam": 0.0, "mix_in": a, "gamma": gamma}
    le, me = iqlearn_online_expert_loss(zeros_e, zeros_e, v_e, vn_e, m_e, m_e, **kw)
    lp, mp = iqlearn_online_policy_loss(zeros_p, v_p, vn_p, m_p, m_p, **kw)
    e_val = ((4 - 1.5) + (3 - 1.0) + (2 - 0.0)) / 3  # 6.5 / 3
    p_val = ((1 - 1.0) + (2 - 0.0) + (5 - 3.0)) / 3  # 4 / 3
    assert me["iq/value_expert"].item() == pytest.approx(e_val)
    assert mp["iq/value_policy"].item() == pytest.approx(p_val)
    assert (le + lp).item() == pytest.approx(a * (p_val - e_val))
    off_e, off_me = iqlearn_online_expert_loss(
        zeros_e, zeros_e, v_e, vn_e, m_e, m_e, value_diff=False, **kw
    )
    off_p, off_mp = iqlearn_online_policy_loss(zeros_p, v_p, vn_p, m_p, m_p, value_diff=False, **kw)
    assert (off_e + off_p).item() == 0.0  # off: not in the loss, still reported
    assert off_me["iq/value_expert"] == me["iq/value_expert"]
    assert off_mp["iq/value_policy"] == mp["iq/value_policy"]


def l_online_by_transitions(logits_e, ids_e, cm_e, logits_p, ids_p, cm_p, *, lam, a, gamma):
    """The reconstructed L_online written transition by transition (bootstrap on truncated rows)."""

    def transitions(logits, ids, cm):
        out = []
        for b in range(ids.shape[0]):
            pos = [t for t in range(ids.shape[1] - 1) if cm[b, t + 1]]
            eos = next((t for t in pos if ids[b, t + 1] == EOS), None)
            for t in pos:
                v = torch.logsumexp(logits[b, t], -1)
                v_next = 0.0 if t == eos else torch.logsumexp(logits[b, t + 1], -1)
                logp = torch.log_softmax(logits[b, t], -1)[ids[b, t + 1]]
                out.append((logp, v, v_next))
        return out

    te, tp = transitions(logits_e, ids_e, cm_e), transitions(logits_p, ids_p, cm_p)

    def mean(xs):
        return torch.stack(list(xs)).mean()

    mle = mean(-lp for lp, _, _ in te)
    td_e = mean((v + lp - gamma * vn) ** 2 for lp, v, vn in te)
    td_p = mean((v + lp - gamma * vn) ** 2 for lp, v, vn in tp)
    val_e = mean(v - gamma * vn for _, v, vn in te)
    val_p = mean(v - gamma * vn for _, v, vn in tp)
    return mle + lam * ((1 - a) * td_e + a * td_p) + a * (val_p - val_e)


def test_online_total_equals_spec_l_online():
    ids, cm = make_batch()
    pids, pcm = policy_batch()
    logits_e = random_logits()
    g = torch.Generator().manual_seed(SEED + 7)
    logits_p = 3.0 * torch.randn(3, 10, V, generator=g, dtype=torch.float64)
    e, p = terms(logits_e, ids, cm, gamma=0.9), terms(logits_p, pids, pcm, gamma=0.9)
    assert p.truncated.any(1).tolist() == [False, True, True]
    le, _, lp, _ = online_losses(e, p, lam=0.7, mix_in=0.3, gamma=0.9)
    want = l_online_by_transitions(
        logits_e, ids, cm, logits_p, pids, pcm, lam=0.7, a=0.3, gamma=0.9
    )
    assert (le + lp).item() == pytest.approx(want.item(), rel=1e-6, abs=1e-6)


def test_online_drop_removes_truncated_transitions_from_policy_terms():
    pids, pcm = policy_batch()
    logits_p = random_logits()
    boot, drop = terms(logits_p, pids, pcm), terms(logits_p, pids, pcm, drop=True)
    kw = {"lam": 1.0, "mix_in": 0.5, "gamma": 0.9}
    _, mb = iqlearn_online_policy_loss(
        boot.r_hat, boot.v, boot.v_next, boot.mask, boot.td_mask, **kw
    )
    _, md = iqlearn_online_policy_loss(
        drop.r_hat, drop.v, drop.v_next, drop.mask, drop.td_mask, **kw
    )
    n = boot.mask.sum()
    removed_td = (boot.r_hat[boot.truncated] ** 2).sum() / n
    removed_v = (boot.v - 0.9 * boot.v_next)[boot.truncated].sum() / n
    torch.testing.assert_close(mb["loss/td_policy"] - md["loss/td_policy"], removed_td)
    torch.testing.assert_close(mb["iq/value_policy"] - md["iq/value_policy"], removed_v)
