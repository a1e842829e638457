"""Training and evaluation metrics stay apart when an evaluation falls between two logs."""

from __future__ import annotations

import pytest

from irlalign.trainers.arguments import check_training, strategy_words
from irlalign.trainers.common import MetricStore


def test_evaluation_between_training_logs_keeps_both_apart():
    store = MetricStore()
    store.add({"loss/total": 1.0})
    with store.evaluating():
        store.add({"loss/total": 5.0, "rewards/accuracy": 0.5, "rewards/margin": 0.2})
    store.add({"loss/total": 3.0})
    evaluated = store.merge_into({"eval_loss": 4.0})
    assert evaluated == {
        "eval_loss": 4.0,
        "eval_loss/total": 5.0,
        "eval_rewards/accuracy": 0.5,
        "eval_accuracy": 0.5,
        "eval_rewards/margin": 0.2,
        "eval_rewards/margins": 0.2,
    }
    assert store.merge_into({"loss": 2.0}) == {"loss": 2.0, "loss/total": 2.0}


def test_a_yaml_false_strategy_is_no():
    training = {"output_dir": "x", "eval_strategy": False, "save_strategy": False}
    check_training(training)
    assert strategy_words(training) == {
        "output_dir": "x",
        "eval_strategy": "no",
        "save_strategy": "no",
    }
    with pytest.raises(ValueError, match="training.eval_strategy"):
        check_training({"output_dir": "x", "eval_strategy": True})
