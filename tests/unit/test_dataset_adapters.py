"""Public dataset layouts (HH-RLHF transcripts, implicit-prompt message pairs, UltraFeedback,
TL;DR, Alpaca) read as the library's formats, and folders of shards read as one dataset, with
errors naming the file (or shard), the row and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset

from irlalign.data.formats import DataValidationError, check_dataset
from irlalign.data.loading import DataFileError, load_rows, table_in_memory


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def parquet(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows).to_parquet(str(path))
    return str(path)


HH = [
    {
        "chosen": "\n\nHuman: hi\n\nAssistant: I think hello",
        "rejected": "\n\nHuman: hi\n\nAssistant: I think go away",
    },
    {
        "chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: yes",
        "rejected": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: no",
    },
]


def test_hh_transcripts_split_at_the_last_shared_assistant_marker(tmp_path):
    rows = load_rows(jsonl(tmp_path / "hh.jsonl", HH))
    # The answers share "I think": the prompt still ends at the marker, not inside the answer.
    assert rows[0]["prompt"] == "\n\nHuman: hi\n\nAssistant:"
    assert (rows[0]["chosen"], rows[0]["rejected"]) == (" I think hello", " I think go away")
    assert rows[1]["prompt"] == "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:"
    assert (rows[1]["chosen"], rows[1]["rejected"]) == (" yes", " no")
    fmt = check_dataset(rows, "hh").fmt
    assert (fmt.kind, fmt.conversational) == ("preference", False)


def test_transcripts_without_a_shared_prompt_name_file_row_and_field(tmp_path):
    path = jsonl(tmp_path / "hh.jsonl", [*HH, {"chosen": "hello", "rejected": "help"}])
    with pytest.raises(DataValidationError) as err:
        load_rows(path)
    assert str(err.value).startswith(f"{path}: row 2: field 'prompt': missing")
    assert "'\\n\\nAssistant:'" in str(err.value)


def test_implicit_prompt_message_pairs_take_the_shared_leading_turns(tmp_path):
    rows = [
        {"chosen": [user("q"), assistant("good")], "rejected": [user("q"), assistant("bad")]},
        {  # a shared assistant turn stays in the prompt; the turns part at the last one
            "chosen": [user("a"), assistant("b"), user("c"), assistant("yes")],
            "rejected": [user("a"), assistant("b"), user("c"), assistant("no")],
        },
    ]
    out = load_rows(jsonl(tmp_path / "pairs.jsonl", rows))
    assert out[0]["prompt"] == [user("q")]
    assert (out[0]["chosen"], out[0]["rejected"]) == ([assistant("good")], [assistant("bad")])
    assert out[1]["prompt"] == [user("a"), assistant("b"), user("c")]
    assert check_dataset(out, "pairs").fmt.conversational


def test_message_pairs_sharing_no_turn_are_one_error(tmp_path):
    rows = [
        {"chosen": [user("q"), assistant("good")], "rejected": [user("q"), assistant("bad")]},
        {"chosen": [user("x"), assistant("good")], "rejected": [user("y"), assistant("bad")]},
    ]
    path = jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(DataValidationError, match=r"pairs\.jsonl: row 1: field 'prompt'"):
        load_rows(path)


ULTRAFEEDBACK = [
    {
        "prompt": "q1",
        "chosen": [user("q1"), assistant("good")],
        "rejected": [user("q1"), assistant("bad")],
        "score_chosen": 8.0,
    },
    {
        "prompt": "q2",
        "chosen": [user("q2"), assistant("fine")],
        "rejected": [user("q2"), assistant("poor")],
        "score_chosen": 7.5,
    },
]


def test_ultrafeedback_rows_become_conversational_pairs(tmp_path):
    rows = load_rows(parquet(tmp_path / "uf.parquet", ULTRAFEEDBACK))
    assert rows[1]["prompt"] == [user("q2")]
    assert rows[1]["chosen"] == [assistant("fine")]
    assert rows[1]["score_chosen"] == 7.5  # other columns pass through
    fmt = check_dataset(rows, "uf").fmt
    assert (fmt.kind, fmt.conversational) == ("preference", True)


def test_ultrafeedback_with_messages_is_pairs_only_for_preference_methods(tmp_path):
    rows = [{**r, "messages": r["chosen"]} for r in ULTRAFEEDBACK]
    path = parquet(tmp_path / "uf.parquet", rows)
    assert check_dataset(load_rows(path), "uf").fmt.kind == "messages"
    pairs = load_rows(path, prefer="preference")
    assert "messages" not in pairs.column_names
    assert check_dataset(pairs, "uf").fmt.kind == "preference"


def test_prompt_string_with_response_only_lists_becomes_a_user_turn(tmp_path):
    rows = [{"prompt": "q", "completion": [assistant("a")]}]
    out = load_rows(jsonl(tmp_path / "pc.jsonl", rows))
    assert out[0]["prompt"] == [user("q")]
    assert check_dataset(out, "pc").fmt.conversational


def test_tldr_summary_is_the_completion_and_plain_pairs_pass_unchanged(tmp_path):
    tldr = [{"prompt": "POST: x\nTL;DR:", "summary": " y"}]
    rows = load_rows(jsonl(tmp_path / "tldr.jsonl", tldr))
    assert (rows[0]["prompt"], rows[0]["completion"]) == ("POST: x\nTL;DR:", " y")
    assert "summary" not in rows.column_names
    pairs = [{"prompt": "POST: x\nTL;DR:", "chosen": " y", "rejected": " z"}]
    assert load_rows(jsonl(tmp_path / "pref.jsonl", pairs))[0] == pairs[0]


def test_alpaca_rows_join_instruction_and_input(tmp_path):
    rows = [
        {"instruction": "Add.", "input": "2 + 2", "output": "4"},
        {"instruction": "Greet.", "input": "", "output": "Hello."},
    ]
    out = load_rows(jsonl(tmp_path / "alpaca.jsonl", rows))
    assert out[0] == {"prompt": "Add.\n\n2 + 2\n\n", "completion": "4"}
    assert out[1] == {"prompt": "Greet.\n\n", "completion": "Hello."}
    bad = jsonl(tmp_path / "bad.jsonl", [rows[0], {"instruction": "Greet.", "output": ""}])
    with pytest.raises(DataValidationError, match=r"bad\.jsonl: row 1: field 'output'"):
        load_rows(bad)


def test_rows_in_memory_are_rewritten_and_errors_name_the_config_key():
    table, checked = table_in_memory(HH, "data.train")
    assert table[0]["prompt"] == "\n\nHuman: hi\n\nAssistant:"
    assert checked.fmt.kind == "preference"
    with pytest.raises(DataValidationError, match=r"^data\.train: row 2 of the given dataset"):
        table_in_memory([*HH, {"chosen": "a", "rejected": "b"}], "data.train")


PC = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(6)]


def test_a_folder_of_shards_is_one_dataset_and_errors_name_the_shard(tmp_path):
    folder = tmp_path / "shards"
    for k in range(3):
        jsonl(folder / f"data-0000{k}-of-00003.jsonl", PC[2 * k : 2 * k + 2])
    assert load_rows(str(folder))["prompt"] == [r["prompt"] for r in PC]
    jsonl(folder / "data-00001-of-00003.jsonl", [PC[2], {"prompt": "p3", "completion": " "}])
    with pytest.raises(DataValidationError) as err:
        load_rows(str(folder))
    assert str(err.value).startswith(f"{folder / 'data-00001-of-00003.jsonl'}: row 1: field")


def test_shards_named_after_splits_and_split_folders(tmp_path):
    named = tmp_path / "named"
    parquet(named / "train-00000-of-00002.parquet", PC[:2])
    parquet(named / "train-00001-of-00002.parquet", PC[2:4])
    parquet(named / "test-00000-of-00001.parquet", PC[4:])
    assert len(load_rows(str(named))) == 4
    assert load_rows(str(named), "test")["prompt"] == ["p4", "p5"]
    with pytest.raises(DataFileError, match=r"no split 'validation'.*\['test', 'train'\]"):
        load_rows(str(named), "validation")
    split_dirs = tmp_path / "dirs"
    jsonl(split_dirs / "train" / "data-0.jsonl", PC[:3])
    jsonl(split_dirs / "test" / "data-0.jsonl", PC[3:])
    assert load_rows(str(split_dirs), "test")["prompt"] == ["p3", "p4", "p5"]


def test_shards_with_different_columns_are_named(tmp_path):
    folder = tmp_path / "mixed"
    jsonl(folder / "data-0.jsonl", PC[:2])
    jsonl(folder / "data-1.jsonl", [{**r, "score": 1} for r in PC[2:]])
    with pytest.raises(DataFileError, match=r"data-1\.jsonl: its columns differ from data-0"):
        load_rows(str(folder))


def test_a_folder_without_data_files_is_still_refused(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "notes.txt").write_text("a\n")
    with pytest.raises(FileNotFoundError, match="not a dataset written by save_to_disk"):
        load_rows(str(tmp_path / "raw"))
