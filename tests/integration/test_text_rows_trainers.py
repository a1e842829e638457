"""Trainers constructed the TRL way, on rows of text: checked, tokenised and collated for them."""

from __future__ import annotations

import pytest
from datasets import load_from_disk
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainingArguments,
)

import irlalign


def _args(tmp_path):
    return TrainingArguments(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, use_cpu=True,
        report_to="none", save_strategy="no", disable_tqdm=True,
    )  # fmt: skip


def _rows(task, name):
    return load_from_disk(str(task / name))["train"].select(range(8))


def test_text_rows_train_and_bad_rows_fail_first(smoke_task_dir, tmp_path):
    path = smoke_task_dir / "pi_init"
    tok = AutoTokenizer.from_pretrained(path)
    demos = _rows(smoke_task_dir, "demos").remove_columns(["true_return", "source"])
    model = AutoModelForCausalLM.from_pretrained(path)
    trainer = irlalign.IQLearnTrainer(
        model=model, args=_args(tmp_path), train_dataset=demos.to_list(), processing_class=tok,
        max_length=32,
    )  # fmt: skip
    assert "completion_mask" in trainer.train_dataset.column_names
    assert max(len(ids) for ids in trainer.train_dataset["input_ids"]) <= 32
    assert trainer.train().training_loss > 0

    prefs = _rows(smoke_task_dir, "preferences")
    rm = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    trainer = irlalign.RewardTrainer(
        model=rm, args=_args(tmp_path), train_dataset=prefs, processing_class=tok
    )
    assert trainer.train().training_loss > 0

    bad = demos.to_list()
    bad[2]["completion"] = 7
    with pytest.raises(ValueError) as err:
        irlalign.SFTTrainer(
            model=model, args=_args(tmp_path), train_dataset=bad, processing_class=tok
        )
    msg = str(err.value)
    assert "train_dataset" in msg and "row 2" in msg and "'completion'" in msg, msg
    with pytest.raises(ValueError, match="needs preference rows, got prompt_completion"):
        irlalign.DPOTrainer(
            model=model, ref_model=model, args=_args(tmp_path), train_dataset=demos,
            processing_class=tok,
        )  # fmt: skip
    with pytest.raises(ValueError, match="processing_class"):
        irlalign.SFTTrainer(model=model, args=_args(tmp_path), train_dataset=demos)
