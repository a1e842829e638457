"""Tests for irlalign.eval.metrics against hand-computed values and reference libraries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from irlalign.eval.metrics import (
    distinct_n,
    mean_and_se,
    pairwise_accuracy,
    self_bleu,
    sentence_bleu,
    spearman,
)


def _tok(text: str) -> list[str]:
    return text.split()


def test_distinct_n_hand_computed() -> None:
    seqs = [_tok("a b a b"), _tok("a c")]
    assert distinct_n(seqs, 1) == pytest.approx(3 / 6)  # a b a b a c
    assert distinct_n(seqs, 2) == pytest.approx(3 / 4)  # ab ba ab ac
    assert distinct_n(seqs, 3) == pytest.approx(2 / 2)  # aba bab
    assert distinct_n([_tok("a")], 2) == 0.0
    assert distinct_n([], 1) == 0.0
    with pytest.raises(ValueError):
        distinct_n(seqs, 0)


def test_bleu_identical_is_one() -> None:
    sent = _tok("the quick brown fox jumps over the lazy dog today")
    assert sentence_bleu(sent, [sent]) == pytest.approx(1.0)
    assert sentence_bleu(sent, [_tok("something else entirely"), sent]) == pytest.approx(1.0)


def test_bleu_brevity_penalty_hand_computed() -> None:
    hyp, ref = _tok("the cat sat on mat"), _tok("the cat sat on the mat")
    # precisions 5/5, 3/4, 2/3, 1/2; BP = exp(1 - 6/5)
    expected = math.exp(1 - 6 / 5) * (1.0 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert sentence_bleu(hyp, [ref]) == pytest.approx(expected)


def test_bleu_exp_smoothing_hand_computed() -> None:
    hyp, ref = _tok("a b c d"), _tok("a c b d x")
    # 4/4 unigrams, then zero matches: 1/(2*3), 1/(4*2), 1/(8*1); BP = exp(1 - 5/4)
    expected = math.exp(1 - 5 / 4) * (1.0 / 6 / 8 / 8) ** 0.25
    assert sentence_bleu(hyp, [ref]) == pytest.approx(expected)


def test_bleu_clipping_and_smoothing() -> None:
    hyp, ref = _tok("the the the the"), _tok("the cat")
    # unigram clipped to 1/4; orders 2..4 smoothed: 1/(2*3), 1/(4*2), 1/(8*1); no BP
    expected = (1 / 4 * 1 / 6 * 1 / 8 * 1 / 8) ** 0.25
    assert sentence_bleu(hyp, [ref]) == pytest.approx(expected)


def test_bleu_closest_reference_ties_go_shorter() -> None:
    # refs of length 3 and 5 are equally close to 4: the shorter one gives BP = 1
    hyp = _tok("a b c d")
    assert sentence_bleu(hyp, [_tok("a b c"), _tok("a b c d e")]) == pytest.approx(1.0)


def test_bleu_short_hypothesis_and_empty() -> None:
    # effective order: only unigrams and bigrams exist in a 2-token hypothesis
    assert sentence_bleu(_tok("a b"), [_tok("a b")]) == pytest.approx(1.0)
    assert sentence_bleu(_tok("a b"), [_tok("a b c")]) == pytest.approx(math.exp(1 - 3 / 2))
    assert sentence_bleu([], [_tok("a b")]) == 0.0
    assert sentence_bleu(_tok("a b"), []) == 0.0
    assert 0.0 < sentence_bleu(_tok("x y z w"), [_tok("a b c d")]) < 0.1


def test_bleu_against_sacrebleu() -> None:
    sacrebleu = pytest.importorskip("sacrebleu")
    rng = np.random.default_rng(0)
    vocab = list("abcdef")
    for _ in range(50):
        hyp = list(rng.choice(vocab, size=rng.integers(1, 12)))
        refs = [list(rng.choice(vocab, size=rng.integers(1, 12))) for _ in range(3)]
        ours = sentence_bleu(hyp, refs)
        theirs = sacrebleu.sentence_bleu(
            " ".join(hyp), [" ".join(r) for r in refs], tokenize="none"
        ).score
        assert ours * 100 == pytest.approx(theirs, abs=1e-6)


def test_self_bleu() -> None:
    sent = _tok("the quick brown fox jumps over the lazy dog")
    assert self_bleu([[sent, sent, sent]]) == pytest.approx(1.0)
    similar = [sent, _tok("the quick brown fox leaps over the lazy cat"), sent]
    different = [sent, _tok("a slow green turtle crawls under tall trees"), sent]
    s_similar, s_different = self_bleu([similar]), self_bleu([different])
    assert 1.0 > s_similar > s_different > 0.0
    # groups with a single sample are skipped; the mean is over qualifying groups
    assert self_bleu([[sent], [sent, sent], similar]) == pytest.approx((1.0 + s_similar) / 2)
    assert math.isnan(self_bleu([[sent], []]))


def test_spearman_hand_cases() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks of x with ties: [1.5, 1.5, 3]; y: [1, 2, 3] -> r = sqrt(3)/2
    assert spearman([5, 5, 7], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1], [2]))


def test_spearman_matches_scipy_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for size in (2, 5, 17, 100):
        x = rng.integers(0, 5, size=size).astype(float)
        y = x + rng.integers(-3, 4, size=size)
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_pairwise_accuracy() -> None:
    score_a = [1.0, 0.0, 2.0, 3.0, 5.0]
    score_b = [0.0, 1.0, 2.0, 1.0, 0.0]
    true_a = [1.0, 1.0, 1.0, 0.0, 4.0]
    true_b = [0.0, 0.0, 0.0, 1.0, 4.0]
    # right, wrong, score tie (0.5), wrong; the last pair has equal truth and is ignored
    assert pairwise_accuracy(score_a, score_b, true_a, true_b) == pytest.approx(1.5 / 4)
    assert math.isnan(pairwise_accuracy([1.0], [0.0], [2.0], [2.0]))
    with pytest.raises(ValueError):
        pairwise_accuracy([1.0], [0.0, 1.0], [1.0], [0.0])


def test_mean_and_se() -> None:
    mean, se = mean_and_se([1.0, 2.0, 3.0, 4.0])
    assert mean == pytest.approx(2.5)
    assert se == pytest.approx(math.sqrt(5 / 3) / 2)  # sample var 5/3, n = 4
    assert mean_and_se([7.0]) == (7.0, 0.0)
    assert all(math.isnan(v) for v in mean_and_se([]))
