"""Method metrics aggregated like transformers' `loss`: token shares (a micro-batch's part of a
loss divided by the whole step's token count) add up over micro-batches and average over
processes; other metrics are means over every value of every process."""

from __future__ import annotations

import pytest

from irlalign.trainers.common import MetricStore


def _process(shares: list[float], accuracies: list[float], scale: float) -> MetricStore:
    """One process's store after one optimizer step of len(shares) micro-batches."""
    store = MetricStore()
    store.step = 7
    for share, accuracy in zip(shares, accuracies, strict=True):
        store.token_scale = scale
        store.add({"loss/total": share, "rewards/accuracy": accuracy})
    return store


def test_shares_sum_over_micro_batches_and_processes():
    # Two processes, two micro-batches each; N counts all four, so each process's loss is
    # scaled by 2 (as `token_normaliser` does) and transformers logs the mean over processes.
    a, b = _process([0.1, 0.2], [1.0, 0.0], 2.0), _process([0.3, 0.4], [1.0, 1.0], 2.0)
    hf_loss = ((0.1 + 0.2) * 2 + (0.3 + 0.4) * 2) / 2
    rank0: list = []
    a.merge_into({"loss": hf_loss}, lambda mine: rank0.append(mine) or [mine])
    # The collective, as rank 1 sees it: both processes' sums in rank order.
    logs = b.merge_into({"loss": hf_loss}, lambda mine: [rank0[0], mine])
    assert logs["loss/total"] == pytest.approx(hf_loss)  # 1.0 = sum of every share
    assert logs["rewards/accuracy"] == pytest.approx(0.75)
    alone = _process([0.1, 0.2], [1.0, 0.0], 2.0).merge_into({"loss": hf_loss})
    assert alone["loss/total"] == pytest.approx(0.6)  # one process's part: not the loss


def test_a_single_process_sums_its_micro_batches_per_step():
    store = _process([0.25, 0.5], [1.0, 0.0], 1.0)
    store.step = 8  # a second optimizer step of the same log
    store.token_scale = 1.0
    store.add({"loss/total": 1.25})
    logs = store.merge_into({"loss": 1.0})
    assert logs["loss/total"] == pytest.approx((0.25 + 0.5 + 1.25) / 2)
    assert logs["rewards/accuracy"] == pytest.approx(0.5)
    assert store.merge_into({"loss": 0.0}) == {"loss": 0.0}  # drained


def test_without_a_token_normaliser_every_metric_is_a_mean():
    store = MetricStore()
    for value in (1.0, 3.0):
        store.add({"loss/total": value})
    assert store.merge_into({"loss": 2.0})["loss/total"] == 2.0
