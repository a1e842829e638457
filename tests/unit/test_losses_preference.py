"""irlalign.losses.preference: Bradley–Terry and sigmoid DPO against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from irlalign.losses import bradley_terry_loss, dpo_loss

LOG2 = math.log(2.0)


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_bradley_terry_is_log2_at_zero_margin():
    r = torch.tensor([0.3, -1.2, 4.0])
    loss, m = bradley_terry_loss(r, r.clone())
    assert loss.item() == pytest.approx(LOG2)
    assert m["rewards/accuracy"].item() == 0.0
    assert m["rewards/margin"].item() == 0.0


def test_bradley_terry_by_hand():
    chosen = torch.tensor([1.0, 0.0, 2.0])
    rejected = torch.tensor([0.0, 0.5, -1.0])
    loss, m = bradley_terry_loss(chosen, rejected)
    want = -(_log_sigmoid(1.0) + _log_sigmoid(-0.5) + _log_sigmoid(3.0)) / 3
    assert loss.item() == pytest.approx(want, rel=1e-6)
    assert m["rewards/accuracy"].item() == pytest.approx(2 / 3)
    assert m["rewards/margin"].item() == pytest.approx((1.0 - 0.5 + 3.0) / 3)
    assert m["loss/total"].item() == pytest.approx(want, rel=1e-6)
    with_margin, _ = bradley_terry_loss(chosen, rejected, margin=0.5)
    want_m = -(_log_sigmoid(0.5) + _log_sigmoid(-1.0) + _log_sigmoid(2.5)) / 3
    assert with_margin.item() == pytest.approx(want_m, rel=1e-6)


def test_bradley_terry_gradient():
    chosen = torch.tensor([2.0], requires_grad=True)
    rejected = torch.tensor([1.0], requires_grad=True)
    bradley_terry_loss(chosen, rejected)[0].backward()
    s = 1.0 / (1.0 + math.exp(1.0))  # σ(−1)
    assert chosen.grad.item() == pytest.approx(-s)
    assert rejected.grad.item() == pytest.approx(s)


def test_dpo_is_log2_at_zero_margin():
    x = torch.tensor([-10.0, -3.0])
    for eps in (0.0, 0.2):
        loss, m = dpo_loss(x, x - 1.0, x + 2.0, x + 1.0, beta=0.5, label_smoothing=eps)
        assert loss.item() == pytest.approx(LOG2)
        assert m["rewards/margin"].item() == pytest.approx(0.0)


def test_dpo_by_hand_with_label_smoothing():
    # h = (−5 − (−6)) − (−9 − (−7)) = 1 − (−2) = 3
    c, r = torch.tensor([-5.0]), torch.tensor([-9.0])
    rc, rr = torch.tensor([-6.0]), torch.tensor([-7.0])
    beta, eps = 0.1, 0.25
    loss, m = dpo_loss(c, r, rc, rr, beta=beta, label_smoothing=eps)
    want = -(1 - eps) * _log_sigmoid(beta * 3) - eps * _log_sigmoid(-beta * 3)
    assert loss.item() == pytest.approx(want, rel=1e-6)
    assert m["rewards/chosen"].item() == pytest.approx(beta * 1.0)
    assert m["rewards/rejected"].item() == pytest.approx(beta * -2.0)
    assert m["rewards/margin"].item() == pytest.approx(beta * 3.0)
    assert m["rewards/accuracy"].item() == 1.0
    plain, _ = dpo_loss(c, r, rc, rr, beta=beta)
    assert plain.item() == pytest.approx(-_log_sigmoid(0.3), rel=1e-6)


def test_dpo_swapping_chosen_and_rejected_flips_the_sign():
    g = torch.Generator().manual_seed(0)
    c, r, rc, rr = (-10 * torch.rand(4, generator=g) for _ in range(4))
    loss, m = dpo_loss(c, r, rc, rr, beta=0.2)
    swapped, ms = dpo_loss(r, c, rr, rc, beta=0.2)
    assert ms["rewards/margin"].item() == pytest.approx(-m["rewards/margin"].item())
    assert ms["rewards/chosen"].item() == pytest.approx(m["rewards/rejected"].item())
    # −log σ(x) − (−log σ(−x)) = −x, per pair
    h = 0.2 * ((c - rc) - (r - rr))
    assert (loss - swapped).item() == pytest.approx(-h.mean().item(), rel=1e-5)


def test_dpo_gradient_pushes_chosen_up():
    c = torch.tensor([-4.0], requires_grad=True)
    r = torch.tensor([-4.0], requires_grad=True)
    dpo_loss(c, r, torch.tensor([-4.0]), torch.tensor([-4.0]), beta=0.1)[0].backward()
    assert c.grad.item() == pytest.approx(-0.05)  # −β·σ(0)
    assert r.grad.item() == pytest.approx(0.05)
