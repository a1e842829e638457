"""What FRFT measures: accuracies against labels and truth, the premise metric, the held-out
pool and how a round's samples are split between the pool and the held-out prompts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from irlalign.frft.measure import PolicyPairs, label_accuracy, pair_accuracies, premise_accuracy
from irlalign.frft.pool import PreferencePool, embedding_text


def _pool(truth: bool = True) -> PreferencePool:
    t = (np.array([3.0, 1.0, 2.0, 5.0]), np.array([1.0, 2.0, 2.0, 4.0])) if truth else (None, None)
    return PreferencePool(["p0", "p1", "p2", "p3"], ["c0", "c1", "c2", "c3"], list("rrrr"), *t)


def test_accuracy_against_labels_and_truth():
    # true order: 0 chosen better, 1 rejected better (a noisy label), 2 tie (skipped), 3 chosen
    chosen, rejected = np.array([1.0, 1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0, 1.0])
    acc = pair_accuracies(chosen, rejected, _pool(), range(4))
    assert acc["labels"] == 0.5  # pairs 0 and 1 scored chosen-first
    assert acc["true"] == pytest.approx(1 / 3)  # of pairs 0, 1, 3 only pair 0 agrees
    assert pair_accuracies(chosen, rejected, _pool(truth=False), range(4))["true"] is None
    sub = pair_accuracies(chosen[[1]], rejected[[1]], _pool(), [1])
    assert (sub["labels"], sub["true"]) == (1.0, 0.0)
    assert np.isnan(label_accuracy(np.zeros(0), np.zeros(0)))


def test_premise_accuracy_orders_two_samples_by_gold():
    scores = np.array([[2.0, 1.0], [0.0, 1.0], [1.0, 1.0], [5.0, 0.0]])
    gold = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    # pair 0 right, pair 1 wrong, pair 2 a score tie (0.5), pair 3 a gold tie (skipped)
    assert premise_accuracy(scores, gold) == pytest.approx(0.5)
    assert PolicyPairs(["a"] * 4, [("x", "y")] * 4, gold).n_pairs == 3
    assert np.isnan(premise_accuracy(scores[3:], gold[3:]))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        premise_accuracy(scores[:, 0], gold[:, 0])


def test_pool_subset_keeps_the_truth_and_with_truth_fills_it():
    pool = _pool()
    sub = pool.subset([3, 0])
    assert sub.prompts == ["p3", "p0"] and sub.chosen_true.tolist() == [5.0, 3.0]
    assert pool.head(-1).rejected_true.tolist() == [1.0, 2.0, 2.0]
    gold = _pool(truth=False).with_truth(
        lambda p, r: np.array([len(x) + int(x[-1] == "3") for x in r])
    )
    assert gold.has_truth and gold.chosen_true.tolist() == [2, 2, 2, 3]


def test_embedding_text_strips_a_trailing_eos_marker():
    assert embedding_text("big red ship <eos>", "<eos>") == "big red ship"
    assert embedding_text("big red ship", "<eos>") == "big red ship"
    assert embedding_text(" <eos>\n", "<eos>") == " "  # an empty response is one space
    assert embedding_text(" ok ", None) == "ok"
    assert embedding_text("a <eos> b", "<eos>") == "a <eos> b"  # only a trailing marker


def test_round_samples_split_pool_and_held_prompts(monkeypatch):
    from irlalign.pipelines import frft_run

    drawn = []

    def fake_sample(ctx, policy, groups):
        drawn.append(groups)
        tagged = lambda ps: [f"{p}#{ps[: i + 1].count(p)}" for i, p in enumerate(ps)]  # noqa: E731
        return [tagged(prompts) for prompts, _ in groups]

    monkeypatch.setattr(frft_run, "sample_groups", fake_sample)
    pool, held = _pool(), PreferencePool(["h0", "h1", "h2"], ["c"] * 3, ["r"] * 3)
    ctx = SimpleNamespace(pool=pool, held=held, gold=object(), cfg=SimpleNamespace(seed=7))
    samples, held_samples = frft_run.round_samples(ctx, "frft", 1, "pi", np.array([1, 3]))
    assert len(drawn) == 1  # one policy load for the whole round
    # H first, with its own seed: the same for every arm that has the same policy
    assert [seed for _, seed in drawn[0]] == [1008, 1007]
    assert samples == ["p1#1", "p3#1"]
    assert held_samples == [["h0#1", "h0#2"], ["h1#1", "h1#2"], ["h2#1", "h2#2"]]
    vanilla = frft_run.round_samples(ctx, "vanilla", 1, "pi", np.arange(0))[1]
    assert vanilla == held_samples and drawn[-1][0] == drawn[0][0]
    ctx.gold = None  # no gold reward: one H sample each, none for the vanilla arm
    one = frft_run.round_samples(ctx, "random", 0, "pi", np.array([0]))[1]
    assert one == [["h0#1"], ["h1#1"], ["h2#1"]]
    assert frft_run.round_samples(ctx, "vanilla", 0, "pi", np.arange(0)) == ([], None)
