"""Data layer: validation errors name file/row/field; masks; truncation; loaders; collation."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, DatasetDict

from irlalign.data.collate import collator_for
from irlalign.data.formats import DataValidationError, check_dataset
from irlalign.data.loading import load_rows
from irlalign.data.tokenize import Truncation, tokenize_dataset
from irlalign.synthetic.model import build_tokenizer

ROWS = [
    {"prompt": "<bos> food big cat <sep>", "completion": "dog tiny <eos>"},
    {"prompt": "<bos> sport a <sep>", "completion": "run fast go"},  # EOS gets appended
]


@pytest.fixture(scope="module")
def tok(default_task):
    return build_tokenizer(default_task)


def test_completion_mask_marks_exactly_the_response(tok):
    ds, stats = tokenize_dataset(ROWS, tok, source="mem")
    assert stats.kept == 2 and stats.dropped == 0
    for row, feat in zip(ROWS, ds, strict=True):
        ids, mask = feat["input_ids"], feat["completion_mask"]
        n_prompt = len(row["prompt"].split())
        assert mask == [0] * n_prompt + [1] * (len(ids) - n_prompt)
        assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
        assert tok.decode(ids[:n_prompt]) == row["prompt"]


def test_chat_template_masks_only_the_last_assistant_turn(tok):
    rows = [
        {
            "messages": [
                {"role": "user", "content": "food big"},
                {"role": "assistant", "content": "dog cat"},
            ]
        }
    ]
    ds, _ = tokenize_dataset(rows, tok, source="chat")
    feat = ds[0]
    response = [i for i, m in zip(feat["input_ids"], feat["completion_mask"], strict=True) if m]
    assert tok.convert_ids_to_tokens(response) == ["dog", "cat", "<eos>"]


def test_validation_names_file_row_and_field(tmp_path):
    path = tmp_path / "train.jsonl"
    good = {"prompt": "<bos> food <sep>", "chosen": "dog <eos>", "rejected": "cat <eos>"}
    bad = {"prompt": "<bos> food <sep>", "chosen": 3, "rejected": "cat <eos>"}
    path.write_text("\n".join(json.dumps(r) for r in (good, good, bad)) + "\n")
    rows = load_rows(str(path))
    with pytest.raises(DataValidationError, match=r"train\.jsonl.*row 2.*'chosen'"):
        check_dataset(rows, str(path))
    with pytest.raises(DataValidationError, match="row 0.*'prompt'"):
        check_dataset([{"prompt": None, "completion": "x"}], "mem")


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "csv", "disk"])
def test_loaders_give_identical_rows(kind, tmp_path):
    ds = Dataset.from_list(ROWS)
    target = tmp_path / f"data.{kind}"
    if kind == "jsonl":
        ds.to_json(str(target))
    elif kind == "parquet":
        ds.to_parquet(str(target))
    elif kind == "csv":
        ds.to_csv(str(target), index=False)
    else:
        DatasetDict({"train": ds}).save_to_disk(str(target))
    assert load_rows(str(target)).to_list() == ROWS


def test_missing_local_data_is_a_clear_error(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError), match="nope"):
        load_rows(str(tmp_path / "nope.jsonl"))


def test_truncation_counts(tok):
    long = [{"prompt": "<bos> food " + "cat " * 10 + "<sep>", "completion": "dog " * 10 + "<eos>"}]
    ds, stats = tokenize_dataset(long, tok, Truncation(max_length=12, max_prompt_length=6))
    assert stats.prompt_truncated == 1 and stats.completion_truncated == 1
    assert len(ds[0]["input_ids"]) == 12 and ds[0]["input_ids"][-1] != tok.eos_token_id
    with pytest.raises(ValueError, match="every row was dropped"):
        tokenize_dataset(long, tok, Truncation(max_length=12, strategy="drop"))


def test_collators_pad_right_and_never_train_on_pad(tok):
    ds, _ = tokenize_dataset(ROWS, tok)
    batch = collator_for("demonstrations", tok.pad_token_id)([ds[0], ds[1]])
    width = max(len(ds[0]["input_ids"]), len(ds[1]["input_ids"]))
    assert batch["input_ids"].shape == (2, width)
    pad = batch["input_ids"] == tok.pad_token_id
    assert not (batch["completion_mask"].bool() & pad).any()
    assert (batch["labels"][batch["completion_mask"] == 0] == -100).all()
    pairs = [{"prompt": "<bos> food <sep>", "chosen": "dog <eos>", "rejected": "cat big <eos>"}]
    pds, _ = tokenize_dataset(pairs, tok)
    pb = collator_for("preference", tok.pad_token_id)([pds[0]])
    assert pb["chosen_input_ids"].shape[1] == pb["rejected_input_ids"].shape[1] == 6
    assert pb["chosen_completion_mask"].sum() == 2 and pb["rejected_completion_mask"].sum() == 3
