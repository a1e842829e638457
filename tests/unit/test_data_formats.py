"""Format detection and row validation: every problem names source, row and field."""

from __future__ import annotations

import pytest
from datasets import Dataset

from irlalign.data.formats import (
    DataFormat,
    DataValidationError,
    check_dataset,
    detect_format,
    validate_rows,
)

PC = DataFormat("prompt_completion", conversational=False)
PREF = DataFormat("preference", conversational=False)
MSG = DataFormat("messages", conversational=True)
CONV_PC = DataFormat("prompt_completion", conversational=True)
CONV_PREF = DataFormat("preference", conversational=True)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


GOOD = {
    PC: {"prompt": "<bos> food cat <sep>", "completion": "big run <eos>"},
    PREF: {"prompt": "<bos> food <sep>", "chosen": "big <eos>", "rejected": "tiny <eos>"},
    MSG: {"messages": [user("hi"), assistant("hello"), user("more"), assistant("ok")]},
    CONV_PC: {"prompt": [user("hi")], "completion": [assistant("hello")]},
    CONV_PREF: {"prompt": [user("hi")], "chosen": [assistant("a")], "rejected": [assistant("b")]},
}


@pytest.mark.parametrize(
    ("columns", "example", "expected"),
    [
        (["prompt", "completion", "true_return"], None, PC),
        (["prompt", "chosen", "rejected", "chosen_return"], None, PREF),
        (["messages"], None, MSG),
        (["prompt", "completion"], GOOD[CONV_PC], CONV_PC),
        (["prompt", "chosen", "rejected"], GOOD[CONV_PREF], CONV_PREF),
        (["prompt", "chosen", "rejected"], GOOD[PREF], PREF),
    ],
)
def test_detect_format(columns, example, expected):
    assert detect_format(columns, example) == expected


def test_detect_format_unknown_columns_names_source_and_columns():
    with pytest.raises(DataValidationError, match=r"^data/x\.jsonl: cannot tell.*'text'"):
        detect_format(["text"], source="data/x.jsonl")


def test_detect_format_needs_explicit_prompt_for_preferences():
    with pytest.raises(DataValidationError, match="field 'prompt'"):
        detect_format(["chosen", "rejected"], source="p.jsonl")


@pytest.mark.parametrize("fmt", list(GOOD))
def test_good_rows_pass(fmt):
    assert validate_rows([GOOD[fmt]] * 3, fmt, "src") == 3


def test_message_matches_documented_shape():
    rows = [GOOD[PREF]] * 17 + [{**GOOD[PREF], "chosen": 3}]
    with pytest.raises(DataValidationError) as info:
        validate_rows(rows, PREF, "data/train.jsonl")
    assert str(info.value) == (
        "data/train.jsonl: row 17: field 'chosen': expected a non-empty string, got int"
    )
    assert [(p.row, p.field) for p in info.value.problems] == [(17, "chosen")]


def _without(row: dict, key: str) -> dict:
    return {k: v for k, v in row.items() if k != key}


BAD = [
    (PC, _without(GOOD[PC], "completion"), "completion", "missing"),
    (PC, {**GOOD[PC], "prompt": None}, "prompt", "expected a non-empty string, got None"),
    (PC, {**GOOD[PC], "prompt": " \n"}, "prompt", "got only whitespace"),
    (PC, {**GOOD[PC], "completion": ""}, "completion", "got an empty one"),
    (PC, {**GOOD[PC], "completion": "  "}, "completion", "got only whitespace"),
    (PC, {**GOOD[PC], "completion": ["big"]}, "completion", "got list"),
    (PREF, {**GOOD[PREF], "rejected": ""}, "rejected", "non-empty string"),
    (PREF, {**GOOD[PREF], "rejected": "big <eos>"}, "rejected", "identical to 'chosen'"),
    (MSG, {"messages": "hi"}, "messages", "expected a list of messages, got str"),
    (MSG, {"messages": []}, "messages", "non-empty list"),
    (MSG, {"messages": [user("a"), {"role": "bot", "content": "b"}]}, "messages[1].role", "'bot'"),
    (MSG, {"messages": [user("a"), {"role": "assistant"}]}, "messages[1].content", "missing"),
    (MSG, {"messages": [user("a"), assistant("")]}, "messages[1].content", "non-empty"),
    (MSG, {"messages": [user("a"), "b"]}, "messages[1]", "expected a message dict"),
    (MSG, {"messages": [assistant("a"), user("b")]}, "messages[1].role", "end with an assistant"),
    (CONV_PC, {**GOOD[CONV_PC], "completion": "hello"}, "completion", "list of messages"),
    (CONV_PC, {**GOOD[CONV_PC], "completion": [user("x")]}, "completion[0].role", "assistant"),
    (CONV_PREF, {**GOOD[CONV_PREF], "rejected": [assistant("a")]}, "rejected", "identical"),
]


@pytest.mark.parametrize(("fmt", "row", "field", "needle"), BAD)
def test_each_problem_names_source_row_and_field(fmt, row, field, needle):
    with pytest.raises(DataValidationError) as info:
        validate_rows([GOOD[fmt], row], fmt, "data/train.jsonl")
    message = str(info.value)
    assert message.startswith(f"data/train.jsonl: row 1: field '{field}': ")
    assert needle in message
    assert isinstance(info.value, ValueError)


def test_prompt_side_of_conversation_may_end_with_any_role():
    row = {"prompt": [user("a"), assistant("b"), user("c")], "completion": [assistant("d")]}
    assert validate_rows([row], CONV_PC, "src") == 1


def test_collects_several_problems_then_stops():
    rows = [{"prompt": "p", "completion": i} for i in range(20)]
    with pytest.raises(DataValidationError) as info:
        validate_rows(rows, PC, "src.jsonl", max_problems=5)
    assert [p.row for p in info.value.problems] == [0, 1, 2, 3, 4]
    assert str(info.value) == (
        "src.jsonl: row 0: field 'completion': expected a non-empty string, got int "
        "(and 4 more problems in rows 1, 2, 3, 4; checking stopped there)"
    )


def test_reports_problems_from_all_rows_when_few():
    rows = [GOOD[PC], {"prompt": 1, "completion": ""}, GOOD[PC]]
    with pytest.raises(DataValidationError) as info:
        validate_rows(rows, PC, "s")
    assert [(p.row, p.field) for p in info.value.problems] == [(1, "prompt"), (1, "completion")]


def test_check_dataset_on_a_datasets_dataset():
    ds = Dataset.from_list([{**GOOD[CONV_PREF], "score": 1.0}] * 2)
    checked = check_dataset(ds, "hub/x")
    assert checked.fmt == CONV_PREF and checked.rows == 2 and checked.extra_columns == ["score"]
    bad = Dataset.from_list([GOOD[PC], {"prompt": "p", "completion": None}])
    with pytest.raises(DataValidationError, match=r"^hub/y: row 1: field 'completion'"):
        check_dataset(bad, "hub/y")


def test_check_dataset_rejects_empty():
    with pytest.raises(DataValidationError, match="no rows"):
        check_dataset([], "empty.jsonl")
