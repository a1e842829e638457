"""`load_rows` reads every local format to the same rows, and fails clearly otherwise."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, DatasetDict

from irlalign.data.loading import load_rows

ROWS = [
    {"prompt": "<bos> food cat <sep>", "completion": "big run <eos>", "true_return": 1.5},
    {"prompt": "<bos> sport dog <sep>", "completion": "tiny <eos>", "true_return": -0.25},
    {"prompt": "<bos> music sun <sep>", "completion": "glad go see <eos>", "true_return": 0.0},
]


def _write(tmp_path, kind: str, rows: list[dict]) -> str:
    ds = Dataset.from_list(rows)
    if kind == "jsonl":
        path = tmp_path / "train.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "json":
        path = tmp_path / "train.json"
        path.write_text(json.dumps(rows))
    elif kind == "parquet":
        path = tmp_path / "train.parquet"
        ds.to_parquet(str(path))
    elif kind == "csv":
        path = tmp_path / "train.csv"
        ds.to_csv(str(path), index=False)
    elif kind == "disk":
        path = tmp_path / "saved"
        ds.save_to_disk(str(path))
    else:
        path = tmp_path / "saved_dict"
        DatasetDict({"train": ds, "test": Dataset.from_list(rows[:1])}).save_to_disk(str(path))
    return str(path)


@pytest.mark.parametrize("kind", ["jsonl", "json", "parquet", "csv", "disk", "disk_dict"])
def test_every_local_format_gives_identical_rows(tmp_path, kind):
    loaded = load_rows(_write(tmp_path, kind, ROWS))
    assert isinstance(loaded, Dataset)
    assert loaded.to_list() == ROWS


def test_conversational_rows_survive_jsonl_and_disk(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
    ]
    assert load_rows(_write(tmp_path, "jsonl", rows)).to_list() == rows
    assert load_rows(_write(tmp_path, "disk", rows)).to_list() == rows


def test_dataset_dict_folder_picks_split(tmp_path):
    spec = _write(tmp_path, "disk_dict", ROWS)
    assert load_rows(spec, split="test").to_list() == ROWS[:1]
    with pytest.raises(ValueError, match=r"no split 'validation'.*\['test', 'train'\]"):
        load_rows(spec, split="validation")


def test_missing_file_names_spec(tmp_path):
    spec = str(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError, match="nope.jsonl: no such file or folder"):
        load_rows(spec)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_rows("./data/missing")


def test_unknown_extension(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("hello\n")
    with pytest.raises(ValueError, match=r"train\.txt: unsupported file extension '\.txt'"):
        load_rows(str(path))


def test_folder_not_saved_with_save_to_disk(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(FileNotFoundError, match="not a dataset written by save_to_disk"):
        load_rows(str(tmp_path / "raw"))


def test_hub_id_offline_is_a_clear_file_not_found():
    # conftest sets HF_HUB_OFFLINE=1, so a Hub id that is not cached cannot load.
    with pytest.raises(FileNotFoundError, match="hub:irlalign-test/no-such-dataset: loading it"):
        load_rows("hub:irlalign-test/no-such-dataset")


def test_a_plain_string_is_never_a_hub_id():
    with pytest.raises(FileNotFoundError, match=r"no such file or folder.*written hub:"):
        load_rows("irlalign-test/no-such-dataset")
