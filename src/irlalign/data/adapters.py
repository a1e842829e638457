"""Public dataset layouts read as the library's formats: each row is rewritten into
prompt/completion or prompt/chosen/rejected before validation, so every later check (and every
error) sees the standard fields.

- implicit prompt, text (HH-RLHF): `chosen` and `rejected` transcripts
  (`\n\nHuman: … \n\nAssistant: …`) without `prompt`: the prompt is their longest common
  beginning that ends with `\n\nAssistant:`; `chosen` / `rejected` keep the rest of each;
- implicit prompt, messages: `chosen` and `rejected` message lists without `prompt`: the prompt
  is the leading turns both share, up to an assistant turn in both; each side keeps the rest;
- UltraFeedback: a `prompt` string with `chosen` / `rejected` message lists that include the
  user turn: split as the implicit-prompt messages (the shared turns replace the string);
- a `prompt` string with `chosen` / `rejected` (or `completion`) lists of assistant turns only:
  the prompt becomes `[{"role": "user", "content": prompt}]`;
- TL;DR: `prompt`, `summary`: the summary is the `completion`;
- Alpaca: `instruction`, optional `input`, `output`: the prompt is the instruction, then a
  blank line and the input when it is not empty, then a blank line; the output is the
  `completion`.

Rows already in a standard format pass unchanged (`layout_of` gives None). A row that cannot be
rewritten (two transcripts that share no prompt, a field of the wrong type) is one
`DataValidationError` naming the source, the row and the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from irlalign.data.formats import DataFormat, DataValidationError, Problem, check_field

# Where an HH-RLHF transcript hands the turn to the assistant: an implicit text prompt ends here.
ASSISTANT_MARKER = "\n\nAssistant:"
# Alpaca's fields joined into one prompt; the trailing blank line separates the response.
ALPACA_JOIN = "\n\n"


class RowProblem(Exception):
    """One field of one row that a layout cannot rewrite (the row index is added by the caller)."""

    def __init__(self, problems: Sequence[Problem]):
        super().__init__(problems[0].message)
        self.problems = list(problems)


@dataclass(frozen=True)
class Layout:
    name: str
    replaces: tuple[str, ...]  # columns the rewritten row no longer holds under their old meaning
    convert: Callable[[Mapping[str, Any]], dict[str, Any]]


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, Mapping) else None


def _same(a: Any, b: Any) -> bool:
    """Two messages are the same turn when role and content agree (arrow adds None-valued keys)."""
    return (
        isinstance(a, Mapping)
        and isinstance(b, Mapping)
        and ((a.get("role"), a.get("content")) == (b.get("role"), b.get("content")))
    )


def _require(row: Mapping[str, Any], names: Sequence[str], conversational: bool) -> None:
    fmt = DataFormat("preference", conversational)
    problems = [p for name in names for p in check_field(row, name, fmt)]
    if problems:
        raise RowProblem(problems)


def split_text(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """(prompt, chosen rest, rejected rest): the longest common beginning ending with the
    assistant marker; None when the two share none."""
    n = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        n += 1
    end = chosen.rfind(ASSISTANT_MARKER, 0, n)
    if end < 0 or end + len(ASSISTANT_MARKER) > n:
        return None
    cut = end + len(ASSISTANT_MARKER)
    return chosen[:cut], chosen[cut:], rejected[cut:]


def split_messages(chosen: list, rejected: list) -> tuple[list, list, list] | None:
    """(prompt, chosen rest, rest of rejected): the shared leading turns, backed off until both
    continue with an assistant turn; None when there is no such shared prefix."""
    k = 0
    while k < min(len(chosen), len(rejected)) and _same(chosen[k], rejected[k]):
        k += 1
    while k > 0 and not (
        k < len(chosen)
        and k < len(rejected)
        and _role(chosen[k]) == "assistant"
        and _role(rejected[k]) == "assistant"
    ):
        k -= 1
    if k == 0:
        return None
    return list(chosen[:k]), list(chosen[k:]), list(rejected[k:])


def _implicit(row: Mapping[str, Any]) -> dict[str, Any]:
    conversational = isinstance(row.get("chosen"), list)
    _require(row, ("chosen", "rejected"), conversational)
    if conversational:
        parts = split_messages(row["chosen"], row["rejected"])
        why = (
            "'chosen' and 'rejected' share no leading messages followed by an assistant turn "
            "in both"
        )
    else:
        parts = split_text(row["chosen"], row["rejected"])
        why = f"'chosen' and 'rejected' share no beginning that ends with {ASSISTANT_MARKER!r}"
    if parts is None:
        message = f"missing, and {why} to take as the prompt; give an explicit 'prompt'"
        raise RowProblem([Problem(None, "prompt", message)])
    prompt, chosen, rejected = parts
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _sides(row: Mapping[str, Any]) -> tuple[str, ...]:
    return ("chosen", "rejected") if "chosen" in row else ("completion",)


def _prompt_string_with_messages(row: Mapping[str, Any]) -> dict[str, Any]:
    sides = _sides(row)
    if not isinstance(row.get("prompt"), str):
        raise RowProblem([Problem(None, "prompt", "expected a string, as in the first row")])
    _require(row, sides, conversational=True)
    if all(_role(row[s][0]) == "assistant" for s in sides):  # the lists hold the responses only
        return {"prompt": [{"role": "user", "content": row["prompt"]}]}
    if len(sides) == 1:  # one conversation: the prompt is everything before its last turn
        turns = row["completion"]
        return {"prompt": list(turns[:-1]), "completion": [turns[-1]]}
    parts = split_messages(row["chosen"], row["rejected"])
    if parts is None:
        message = "'chosen' and 'rejected' share no leading turns followed by an assistant turn"
        raise RowProblem([Problem(None, "chosen", message)])
    return dict(zip(("prompt", "chosen", "rejected"), parts, strict=True))


def _summary(row: Mapping[str, Any]) -> dict[str, Any]:
    problems = check_field(row, "summary", DataFormat("prompt_completion", False))
    if problems:
        raise RowProblem(problems)
    return {"completion": row["summary"]}


def _alpaca(row: Mapping[str, Any]) -> dict[str, Any]:
    fmt = DataFormat("prompt_completion", False)
    problems = [p for name in ("instruction", "output") for p in check_field(row, name, fmt)]
    extra = row.get("input")
    if extra is not None and not isinstance(extra, str):
        problems.append(Problem(None, "input", f"expected a string, got {type(extra).__name__}"))
    if problems:
        raise RowProblem(problems)
    parts = [row["instruction"]] + ([extra] if extra and extra.strip() else [])
    return {"prompt": ALPACA_JOIN.join(parts) + ALPACA_JOIN, "completion": row["output"]}


IMPLICIT = Layout("implicit prompt", ("chosen", "rejected"), _implicit)
PROMPT_STRING = Layout("prompt string + message lists", ("prompt",), _prompt_string_with_messages)
SUMMARY = Layout("prompt/summary", ("summary",), _summary)
ALPACA = Layout("alpaca", ("instruction", "input", "output"), _alpaca)


def layout_of(columns: Sequence[str], example: Mapping[str, Any] | None) -> Layout | None:
    """The layout a dataset's columns (and first row) are in; None for a standard format."""
    cols = set(columns)
    ex = example if isinstance(example, Mapping) else {}
    if "messages" in cols:
        return None
    if {"chosen", "rejected"} <= cols:
        if "prompt" not in cols:
            return IMPLICIT
        side = "chosen"
    elif {"prompt", "completion"} <= cols:
        side = "completion"
    elif {"prompt", "summary"} <= cols:
        return SUMMARY
    elif {"instruction", "output"} <= cols and "prompt" not in cols:
        return ALPACA
    else:
        return None
    if isinstance(ex.get("prompt"), str) and isinstance(ex.get(side), list):
        return PROMPT_STRING
    return None


def convert_row(
    layout: Layout, row: Any, index: int, source: str, rows_of: str | None = None
) -> dict[str, Any]:
    """The fields ``layout`` rewrites in ``row``; a row it cannot rewrite is one
    `DataValidationError` naming ``source``, row ``index`` and the field."""
    if not isinstance(row, Mapping):
        problem = Problem(index, None, f"expected a mapping of fields, got {type(row).__name__}")
        raise DataValidationError(source, [problem], rows_of=rows_of)
    try:
        return layout.convert(row)
    except RowProblem as err:
        found = [Problem(index, p.field, p.message) for p in err.problems]
        raise DataValidationError(source, found, rows_of=rows_of) from None


def adapt_list(rows: list[Any], source: str, rows_of: str | None = None) -> list[Any]:
    """Rows given as a list of dicts, rewritten when they are in a public layout."""
    layout = layout_of(list(rows[0]), rows[0]) if rows and isinstance(rows[0], Mapping) else None
    if layout is None:
        return rows
    out = []
    for i, row in enumerate(rows):
        new = convert_row(layout, row, i, source, rows_of)
        kept = {k: v for k, v in row.items() if k not in layout.replaces}
        out.append({**kept, **new})
    return out
