"""irlalign.losses.afd: the discriminator BCE, AIRL/GAIL rewards and the log-ratio reward."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from irlalign.losses import (
    airl_reward,
    bce_discriminator_loss,
    gail_reward,
    log_ratio_per_token,
    log_ratio_rewards,
)


def test_bce_matches_torch_and_hand_values():
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0])
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0])
    loss, m = bce_discriminator_loss(logits, labels)
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(logits, labels))
    by_hand = (
        math.log1p(math.exp(-2.0))  # −log σ(2)
        + math.log1p(math.exp(-1.0))  # −log σ(1) = −log(1 − σ(−1))
        + math.log1p(math.exp(0.5))  # −log(1 − σ(0.5))
        + math.log1p(math.exp(3.0))  # −log σ(−3)
    ) / 4
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    assert m["loss/total"].item() == pytest.approx(by_hand, rel=1e-6)
    assert m["rewards/accuracy"].item() == pytest.approx(0.5)  # rows 0 and 1 are right
    assert m["rewards/pos_mean"].item() == pytest.approx((2.0 - 3.0) / 2)
    assert m["rewards/neg_mean"].item() == pytest.approx((-1.0 + 0.5) / 2)


def test_bce_accepts_integer_labels_and_is_log2_at_zero():
    loss, m = bce_discriminator_loss(torch.zeros(3), torch.tensor([1, 0, 1]))
    assert loss.item() == pytest.approx(math.log(2.0))
    assert m["rewards/accuracy"].item() == pytest.approx(1 / 3)  # ℓ = 0 predicts class 0


def test_bce_label_smoothing_and_one_class_batches():
    logits = torch.tensor([1.5, -0.5])
    labels = torch.tensor([1.0, 1.0])
    loss, m = bce_discriminator_loss(logits, labels, label_smoothing=0.2)
    want = F.binary_cross_entropy_with_logits(logits, torch.full((2,), 0.9))
    torch.testing.assert_close(loss, want)
    assert "rewards/neg_mean" not in m and m["rewards/pos_mean"].item() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        bce_discriminator_loss(logits, labels[:1])


def test_bce_gradient_is_sigmoid_minus_label():
    logits = torch.tensor([0.3, -1.2, 2.0], requires_grad=True)
    labels = torch.tensor([1.0, 0.0, 0.0])
    loss, _ = bce_discriminator_loss(logits, labels)
    loss.backward()
    torch.testing.assert_close(logits.grad, (torch.sigmoid(logits.detach()) - labels) / 3)


def test_airl_and_gail_rewards_are_the_log_d_formulas():
    logits = torch.tensor([-30.0, -2.0, 0.0, 0.7, 5.0], dtype=torch.float64)
    d = torch.sigmoid(logits)
    log_d, log_1md = F.logsigmoid(logits), F.logsigmoid(-logits)
    torch.testing.assert_close(airl_reward(logits), log_d - log_1md)
    torch.testing.assert_close(airl_reward(logits), torch.log(d) - torch.log1p(-d))
    torch.testing.assert_close(gail_reward(logits), -log_1md)
    assert gail_reward(logits)[2].item() == pytest.approx(math.log(2.0))
    assert (gail_reward(logits) > 0).all()
    # Stable where 1 − D rounds to 0 in fp32.
    assert gail_reward(torch.tensor([100.0])).item() == pytest.approx(100.0)


def test_log_ratio_rewards_by_hand():
    sft = torch.tensor([[-1.0, -0.5, -2.0, -9.0], [-0.1, -0.2, float("-inf"), -3.0]])
    init = torch.tensor([[-2.0, -1.0, -1.0, -1.0], [-0.3, -0.2, -1.0, -5.0]])
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 0, 1]])
    per_token = log_ratio_per_token(sft, init, mask)
    torch.testing.assert_close(
        per_token, torch.tensor([[0.0, 0.5, -1.0, 0.0], [0.2, 0.0, 0.0, 2.0]])
    )
    summed, normalised = log_ratio_rewards(sft, init, mask)
    torch.testing.assert_close(summed, torch.tensor([-0.5, 2.2]))
    torch.testing.assert_close(normalised, torch.tensor([-0.25, 2.2 / 3]))
    # −inf at a masked position (a pad) leaks into neither the value nor the gradient.
    sft.requires_grad_(True)
    log_ratio_rewards(sft, init, mask)[0].sum().backward()
    assert torch.isfinite(sft.grad).all() and sft.grad[1, 2] == 0


def test_log_ratio_is_zero_for_equal_models_and_empty_rows():
    logps = torch.randn(2, 5)
    summed, normalised = log_ratio_rewards(logps, logps.clone(), torch.ones(2, 5))
    assert (summed == 0).all() and (normalised == 0).all()
    summed, normalised = log_ratio_rewards(logps, logps - 1, torch.zeros(2, 5))
    assert (summed == 0).all() and (normalised == 0).all()
