"""Dataset formats (the TRL ones) and the validation every dataset passes before training.

Formats, detected from column names:

- prompt/completion: `prompt`, `completion`;
- preference: `prompt`, `chosen`, `rejected`;
- conversational: `messages` (a list of `{"role", "content"}` dicts).

Prompt/completion and preference rows may also be conversational: their fields are then message
lists instead of strings (`prompt=[{"role": "user", ...}]`, `completion=[{"role": "assistant",
...}]`), as TRL allows. Validation runs over every row and reports problems by source, row index
(0-based, the index into the dataset) and field, because a bad row found mid-training costs a run.
Every text field must hold visible text, the prompt included: an empty prompt leaves the first
response token without context, and a sampler cannot generate from it. Rows that repeat an
earlier row are allowed but counted in one `DataWarning`.

Other public layouts (HH-RLHF transcripts without a prompt, UltraFeedback, TL;DR, Alpaca) are
rewritten into these formats before validation (`irlalign.data.adapters`).

Rows given in memory (a list of dicts or a `datasets.Dataset`, through `irlalign.train`) pass
the same checks; their errors name the config key and "row N of the given dataset" instead of a
file (`check_in_memory`).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["prompt_completion", "preference", "messages"]
ROLES = ("system", "user", "assistant", "tool")
# Turns that must hold visible text: what the user asks and what the model is trained to say.
SPOKEN = ("user", "assistant")
# The fields holding text (or message lists) per kind; everything else in a row is passed through.
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "prompt_completion": ("prompt", "completion"),
    "preference": ("prompt", "chosen", "rejected"),
    "messages": ("messages",),
}


# How rows given in memory are named in errors: there is no file to point at.
IN_MEMORY = "the given dataset"


class DataWarning(UserWarning):
    """Data that loads but looks wrong (a cut last line, repeated rows); training goes on."""


@dataclass(frozen=True)
class DataFormat:
    """What a dataset holds: its kind, and whether its text fields are message lists."""

    kind: Kind
    conversational: bool

    @property
    def fields(self) -> tuple[str, ...]:
        return TEXT_FIELDS[self.kind]


@dataclass(frozen=True)
class Problem:
    row: int | None  # None: a problem with the dataset as a whole (e.g. its columns)
    field: str | None
    message: str

    def render(self, source: str, rows_of: str | None = None) -> str:
        """`source: row N: field 'f': message`; with `rows_of` (rows given in memory, which
        `source` only names the key of) `source: row N of <rows_of>: ...`."""
        parts = [source]
        if self.row is not None:
            parts.append(f"row {self.row}" + (f" of {rows_of}" if rows_of else ""))
        elif rows_of:
            parts.append(rows_of)
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return ": ".join([*parts, self.message])


class DataValidationError(ValueError):
    """Bad training data: one line naming source, row and field of the first problem, and how
    many more were found in which rows (all of them are in `problems`)."""

    def __init__(
        self,
        source: str,
        problems: Sequence[Problem],
        truncated: bool = False,
        rows_of: str | None = None,
    ):
        self.source = source
        self.problems = list(problems)
        self.truncated = truncated
        first = self.problems[0].render(source, rows_of)
        super().__init__(first + _more(self.problems[1:], truncated))


def _more(rest: Sequence[Problem], truncated: bool) -> str:
    """` (and 2 more problems in rows 3, 7)`; empty when there are none."""
    if not rest:
        return ""
    rows = sorted({p.row for p in rest if p.row is not None})
    where = f" in row{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows))}" if rows else ""
    stop = "; checking stopped there" if truncated else ""
    return f" (and {len(rest)} more problem{'s' if len(rest) > 1 else ''}{where}{stop})"


def detect_format(
    columns: Iterable[str], example: Mapping[str, Any] | None = None, source: str = "dataset"
) -> DataFormat:
    """The format of a dataset from its column names; `example` (a row) tells whether the
    prompt/completion or preference fields are message lists (without it: plain strings)."""
    cols = set(columns)
    if "messages" in cols:
        return DataFormat("messages", conversational=True)
    if {"chosen", "rejected"} <= cols:
        if "prompt" not in cols:
            # An implicit prompt (shared prefix of chosen and rejected) is ambiguous to split.
            raise DataValidationError(
                source, [Problem(None, "prompt", "preference data needs an explicit 'prompt'")]
            )
        kind: Kind = "preference"
    elif {"prompt", "completion"} <= cols:
        kind = "prompt_completion"
    else:
        msg = (
            f"cannot tell the format from columns {sorted(cols)}; expected 'prompt' + "
            "'completion', 'prompt' + 'chosen' + 'rejected', or 'messages'"
        )
        raise DataValidationError(source, [Problem(None, None, msg)])
    conversational = example is not None and isinstance(example.get(TEXT_FIELDS[kind][1]), list)
    return DataFormat(kind, conversational)


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _check_string(value: Any, required: bool) -> str | None:
    """An error message for a bad text field, or None."""
    if not isinstance(value, str):
        return f"expected a {'non-empty ' if required else ''}string, got {_type_name(value)}"
    if required and not value.strip():
        got = "an empty one" if not value else f"only whitespace ({value!r})"
        return f"expected a non-empty string, got {got}"
    return None


def _check_messages(value: Any, field_name: str, end_with_assistant: bool) -> list[Problem]:
    """Problems of one message list, without the row index (filled in by the caller)."""
    if isinstance(value, str):
        # What a CSV cell (or a JSON-encoded string) gives: text, never a list.
        msg = "expected a list of messages, got str; store conversations as .jsonl/.json/.parquet"
        return [Problem(None, field_name, msg)]
    if not isinstance(value, list):
        return [Problem(None, field_name, f"expected a list of messages, got {_type_name(value)}")]
    if not value:
        return [Problem(None, field_name, "expected a non-empty list of messages, got []")]
    problems = []
    for i, msg in enumerate(value):
        where = f"{field_name}[{i}]"
        if not isinstance(msg, Mapping):
            problems.append(Problem(None, where, f"expected a message dict, got {_type_name(msg)}"))
            continue
        if msg.get("role") not in ROLES:
            got = repr(msg["role"]) if "role" in msg else "no role"
            problems.append(Problem(None, f"{where}.role", f"expected one of {ROLES}, got {got}"))
        if "content" not in msg:
            problems.append(Problem(None, f"{where}.content", "missing"))
        elif (err := _check_string(msg["content"], msg.get("role") in SPOKEN)) is not None:
            problems.append(Problem(None, f"{where}.content", err))
    last = value[-1]
    if end_with_assistant and isinstance(last, Mapping) and last.get("role") != "assistant":
        where = f"{field_name}[{len(value) - 1}].role"
        msg = f"a training conversation must end with an assistant turn, got {last.get('role')!r}"
        problems.append(Problem(None, where, msg))
    return problems


def check_field(row: Mapping[str, Any], name: str, fmt: DataFormat) -> list[Problem]:
    """Problems of one field of one row (row index left as None)."""
    if name not in row:
        return [Problem(None, name, "missing")]
    value = row[name]
    if fmt.conversational:
        # The prompt side of a conversation may end with any turn; the trained side must end
        # with the assistant's.
        return _check_messages(value, name, end_with_assistant=name != "prompt")
    err = _check_string(value, required=True)
    return [] if err is None else [Problem(None, name, err)]


def row_problems(row: Mapping[str, Any], fmt: DataFormat) -> list[Problem]:
    """Every problem of one row (row index left as None)."""
    if not isinstance(row, Mapping):
        return [Problem(None, None, f"expected a mapping of fields, got {_type_name(row)}")]
    problems = [p for name in fmt.fields for p in check_field(row, name, fmt)]
    if fmt.kind == "preference" and not problems and row["chosen"] == row["rejected"]:
        problems.append(Problem(None, "rejected", "identical to 'chosen'"))
    return problems


def validate_rows(
    rows: Iterable[Mapping[str, Any]], fmt: DataFormat, source: str, max_problems: int = 5
) -> int:
    """Check every row; raise one `DataValidationError` naming the first `max_problems` problems.

    Returns the number of rows checked. Row indices are 0-based (`dataset[i]`).
    """
    found: list[Problem] = []
    n = 0
    for n, row in enumerate(rows, start=1):
        for p in row_problems(row, fmt):
            found.append(Problem(n - 1, p.field, p.message))
            if len(found) >= max_problems:
                raise DataValidationError(source, found, truncated=True)
    if found:
        raise DataValidationError(source, found)
    return n


@dataclass
class ValidatedFormat:
    """Detection and validation in one call, for callers that hold a `datasets.Dataset`."""

    fmt: DataFormat
    rows: int = 0
    extra_columns: list[str] = field(default_factory=list)


def check_dataset(dataset: Any, source: str, max_problems: int = 5) -> ValidatedFormat:
    """Detect the format of a `datasets.Dataset` (or list of dicts) and validate every row."""
    if isinstance(dataset, list):
        columns = list(dataset[0]) if dataset else []
    else:
        columns = list(dataset.column_names)
    if len(dataset) == 0:
        raise DataValidationError(source, [Problem(None, None, "the dataset has no rows")])
    fmt = detect_format(columns, dataset[0], source)
    n = validate_rows(dataset, fmt, source, max_problems)
    warn_duplicates(dataset, fmt, source)
    extra = [c for c in columns if c not in fmt.fields]
    return ValidatedFormat(fmt, n, extra)


def check_in_memory(rows: Any, key: str, max_problems: int = 5) -> ValidatedFormat:
    """`check_dataset` for rows given in memory (a list of dicts or a `datasets.Dataset`), as
    the config key `key` (`data.train`): errors read `data.train: row 3 of the given dataset:
    field 'completion': ...`."""
    if isinstance(rows, list) and rows and not isinstance(rows[0], Mapping):
        # check_dataset reads the columns from the first row: it must be a mapping.
        found = row_problems(rows[0], DataFormat("prompt_completion", False))
        raise DataValidationError(key, [Problem(0, None, found[0].message)], rows_of=IN_MEMORY)
    try:
        return check_dataset(rows, key, max_problems)
    except DataValidationError as err:
        raise DataValidationError(key, err.problems, err.truncated, IN_MEMORY) from None


def _row_keys(dataset: Any, names: tuple[str, ...]) -> Iterable[bytes]:
    """A digest of each row's text fields (digests: a copy of every text would double memory)."""
    if isinstance(dataset, list):
        columns = [[row.get(n) for row in dataset] for n in names]
    else:
        columns = [dataset[n] for n in names]  # columnar reads are far faster than row reads
    for values in zip(*columns, strict=True):
        text = json.dumps(list(values), sort_keys=True, default=str)
        yield hashlib.blake2b(text.encode(), digest_size=16).digest()


def duplicate_rows(dataset: Any, fmt: DataFormat) -> tuple[int, tuple[int, int] | None]:
    """How many rows repeat an earlier row's text fields, and the first (earlier, later) pair."""
    seen: dict[bytes, int] = {}
    repeats, first = 0, None
    for i, key in enumerate(_row_keys(dataset, fmt.fields)):
        if key in seen:
            repeats += 1
            first = first or (seen[key], i)
        else:
            seen[key] = i
    return repeats, first


def warn_duplicates(dataset: Any, fmt: DataFormat, source: str) -> int:
    """Warn once when rows repeat; duplicates are legal but weigh their example more."""
    repeats, first = duplicate_rows(dataset, fmt)
    if repeats:
        warnings.warn(
            f"{source}: {repeats} of {len(dataset)} rows repeat an earlier row (first: row "
            f"{first[1]} repeats row {first[0]}); a repeated example counts more in training",
            DataWarning,
            stacklevel=3,
        )
    return repeats
