"""Held-out prompts for a judged evaluation, from any data format the library reads.

Prompt/completion, preference and `messages` rows give their prompts as the online loops read
them (`irlalign.loops.setup.load_prompts`: chat prompts rendered with the tokenizer's template
and its generation prompt, each distinct prompt once), and so do rows holding only a `prompt`
(text or a message list). The rows are checked before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from irlalign.data.formats import (
    DataFormat,
    DataValidationError,
    Problem,
    detect_format,
    validate_rows,
)

# Columns that make rows more than prompts: the library's other formats.
OTHER_FIELDS = ("completion", "chosen", "rejected", "messages")


@dataclass(frozen=True)
class PromptRows:
    """Checked rows of a prompts source; ``prompt_only``: rows with a `prompt` and nothing of
    another format."""

    source: str
    split: str
    rows: Any  # datasets.Dataset
    prompt_only: bool
    conversational: bool

    @property
    def where(self) -> str:
        return f"{self.source} [{self.split}]"


def check_prompt_rows(source: str, split: str) -> PromptRows:
    """Load and validate the rows (errors name the source, row and field); no tokenizer, no
    model."""
    from irlalign.data.loading import load_rows

    where = f"{source} [{split}]"
    rows = load_rows(source, split)
    if len(rows) == 0:
        raise DataValidationError(where, [Problem(None, None, "the dataset has no rows")])
    columns = set(rows.column_names)
    if "prompt" not in columns and "messages" not in columns:
        raise DataValidationError(
            where,
            [
                Problem(
                    None,
                    "prompt",
                    f"missing: no prompts to evaluate on (columns {sorted(columns)}); expected "
                    "a 'prompt' field (alone, or with 'completion' or 'chosen'/'rejected') or "
                    "'messages'",
                )
            ],
        )
    if columns.isdisjoint(OTHER_FIELDS):
        conversational = isinstance(rows[0]["prompt"], list)
        validate_rows(_with_stand_in(rows, conversational), _STAND_IN[conversational], where)
        return PromptRows(source, split, rows, True, conversational)
    fmt = detect_format(columns, rows[0], where)
    validate_rows(rows, fmt, where)
    return PromptRows(source, split, rows, False, fmt.conversational)


# Prompt-only rows are checked as prompt/completion rows with a valid stand-in completion, so
# every problem found is the prompt's, and is reported as for training data.
_STAND_IN = {
    False: DataFormat("prompt_completion", conversational=False),
    True: DataFormat("prompt_completion", conversational=True),
}
_STAND_IN_COMPLETION = {False: "-", True: [{"role": "assistant", "content": "-"}]}


def _with_stand_in(rows, conversational: bool):
    completion = _STAND_IN_COMPLETION[conversational]
    return ({"prompt": row["prompt"], "completion": completion} for row in rows)


def prompt_texts(checked: PromptRows, tokenizer, max_prompts: int | None = None) -> list[str]:
    """The distinct prompt strings, in file order (the first ``max_prompts``), as the online
    loops' `load_prompts` gives them to the sampler: text prompts as they are, chat prompts
    rendered with the tokenizer's template and its generation prompt."""
    rows = checked.rows
    if "messages" in rows.column_names:  # the conversation up to its final (assistant) turn
        values = [m[:-1] for m in rows["messages"]]
    else:
        values = list(rows["prompt"])
    if checked.conversational:
        values = [
            tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
            for m in values
        ]
    prompts = list(dict.fromkeys(values))
    return prompts if max_prompts is None else prompts[:max_prompts]
