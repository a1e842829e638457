"""The `training` section of the `Trainer` methods, checked when the config resolves.

It holds `transformers.TrainingArguments` keywords plus the library's own keys (`LibraryKeys`).
Unknown keys, values of the wrong type and step counts that cannot mean anything are errors named
`training.<key>`, before any data or model loads; `TrainingArguments` would report them as a
TypeError, or accept them silently (`max_steps: 0` trains one step at learning rate 0,
`max_steps: -3` trains for epochs).

`max_steps` follows transformers: a positive number of optimizer steps, or -1 (its default) to
train for `num_train_epochs` epochs (default 3). Other values are errors.

`eval_strategy`, `save_strategy` and `logging_strategy` accept `false` for transformers' "no":
YAML reads an unquoted `no` (`--training.eval_strategy no`) as false.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from irlalign.config import check_keys, check_types


@dataclass
class LibraryKeys:
    """`training` keys of a `Trainer` method that the library reads and never passes on."""

    # Steps with a NaN/inf gradient norm that may be skipped before the run stops with an error.
    skip_nonfinite_steps: int = 0
    resume_from_checkpoint: bool | str | None = None  # true: the newest checkpoint of the run
    overwrite_output_dir: bool = False  # read by the run folder, never by TrainingArguments


LIBRARY_KEYS = tuple(f.name for f in dataclasses.fields(LibraryKeys))
# Counts and intervals that must be > 0 when given (a float < 1 for the `*_steps` intervals is
# transformers' fraction of the total steps).
POSITIVE = (
    "save_steps",
    "logging_steps",
    "eval_steps",
    "num_train_epochs",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
)
NON_NEGATIVE = ("learning_rate", "warmup_steps", "weight_decay", "skip_nonfinite_steps")
# Keys whose "no" value YAML 1.1 reads as the boolean false.
STRATEGY_KEYS = ("eval_strategy", "save_strategy", "logging_strategy")


def strategy_words(training: dict[str, Any]) -> dict[str, Any]:
    """`training` with a false strategy value as the string "no" that transformers expects."""
    return {**training, **{k: "no" for k in STRATEGY_KEYS if training.get(k) is False}}


def trainer_fields() -> set[str]:
    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments) if f.init}


def check_training(training: dict[str, Any], section: str = "training") -> None:
    """Keys, types and step counts of a `Trainer` method's `training` section (`section`: its
    name in messages, e.g. `method.rm_training` for a pipeline phase's)."""
    from transformers import TrainingArguments

    training = strategy_words(training)
    check_keys(trainer_fields() | set(LIBRARY_KEYS), training, section)
    own = {k: v for k, v in training.items() if k in LIBRARY_KEYS}
    check_types(LibraryKeys, own, section)
    passed_on = {k: v for k, v in training.items() if k not in LIBRARY_KEYS}
    check_types(TrainingArguments, passed_on, section)
    check_max_steps(training, section)
    check_signs(training, section)


def check_max_steps(training: dict[str, Any], section: str = "training") -> None:
    steps = training.get("max_steps", -1)
    if steps == -1 or steps > 0:
        return
    raise ValueError(
        f"{section}.max_steps: expected a positive number of steps, or -1 to train for "
        f"num_train_epochs epochs, got {steps}"
    )


def check_signs(training: dict[str, Any], section: str = "training") -> None:
    for key in POSITIVE:
        value = training.get(key)
        if value is not None and value <= 0:
            raise ValueError(f"{section}.{key}: expected a number > 0, got {value}")
    for key in NON_NEGATIVE:
        value = training.get(key)
        if value is not None and value < 0:
            raise ValueError(f"{section}.{key}: expected a number >= 0, got {value}")
