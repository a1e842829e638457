"""FRFT refit data and schedule: the up-weighted mode's row counts, its default weight, the
step count's default, and the config checks of the new options."""

from __future__ import annotations

import numpy as np
import pytest

from irlalign.frft.refit import default_upweight, refit_rows, refit_training
from irlalign.pipelines.frft import FRFTConfig


def test_subset_mode_trains_on_the_selection_only():
    rows = refit_rows(10, [7, 2, 5], "subset")
    assert rows.tolist() == [7, 2, 5]


def test_upweighted_mode_counts_each_selected_pair_weight_times():
    rows = refit_rows(10, [7, 2, 5], "upweighted", weight=4)
    counts = np.bincount(rows, minlength=10)
    assert counts[[2, 5, 7]].tolist() == [4, 4, 4]
    assert counts[[0, 1, 3, 4, 6, 8, 9]].tolist() == [1] * 7
    assert len(rows) == 10 + 3 * 3
    # weight 1 is the plain pool: the selection gets no extra weight
    assert sorted(refit_rows(10, [7, 2, 5], "upweighted", weight=1).tolist()) == list(range(10))


def test_default_upweight_makes_the_selection_about_half_of_the_rows():
    assert default_upweight(2000, 400) == 4  # 400 × 4 = 1600 = the 1600 unselected pairs
    rows = refit_rows(2000, np.arange(0, 2000, 5), "upweighted")
    share = np.isin(rows, np.arange(0, 2000, 5)).mean()
    assert share == pytest.approx(0.5, abs=0.01)
    assert default_upweight(100, 90) == 1  # never below 1
    assert default_upweight(10, 0) == 1


@pytest.mark.parametrize(
    ("selected", "mode", "weight", "match"),
    [
        ([1, 1], "subset", None, "unique"),
        ([10], "subset", None, r"\[0, 10\)"),
        ([1], "weighted", None, "refit mode"),
        ([1], "upweighted", 0, "int >= 1"),
        ([1], "upweighted", 1.5, "int >= 1"),
    ],
)
def test_refit_rows_refuses_bad_input(selected, mode, weight, match):
    with pytest.raises(ValueError, match=match):
        refit_rows(10, selected, mode, weight)


def test_refit_steps_default_scales_with_the_refit_rows():
    training, steps = refit_training({"per_device_train_batch_size": 8}, 400, 1.0)
    assert steps == 50 and training["max_steps"] == 50  # one pass over 400 pairs
    assert refit_training({"per_device_train_batch_size": 8}, 401, 2.0)[1] == 101
    accumulated = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2}
    assert refit_training(accumulated, 400, 1.0)[1] == 50
    assert refit_training({}, 16, 1.0)[1] == 2  # transformers' default batch size 8
    assert refit_training({}, 1, 0.1)[1] == 1  # at least one step


def test_refit_steps_given_are_kept():
    given = {"max_steps": 2000, "learning_rate": 1e-4}
    assert refit_training(given, 400, 1.0) == (given, 2000)
    epochs = {"num_train_epochs": 3}  # an epoch count is left to the trainer
    assert refit_training(epochs, 400, 1.0) == (epochs, None)
    unset = {"max_steps": -1}  # transformers' "not set"
    assert refit_training(unset, 80, 1.0)[1] == 10


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"refit": "weighted"}, "method.refit"),
        ({"upweight": 0}, "method.upweight"),
        ({"upweight": 2.5}, "method.upweight"),
        ({"refit_passes": 0}, "method.refit_passes"),
        ({"k_val": 300, "n_random_val": 200}, "method.k_val"),
        ({"n_random_val": 0}, "method.n_random_val"),
    ],
)
def test_frft_config_refuses_bad_refit_options(options, match):
    with pytest.raises(ValueError, match=match):
        FRFTConfig(**options)
    FRFTConfig(refit="upweighted", upweight=3, refit_passes=0.5)
