"""Trainers built the way TRL's are, on rows of text.

``IQLearnTrainer(model=m, args=TrainingArguments(...), train_dataset=Dataset.from_list(rows),
processing_class=tokenizer)`` works like ``irlalign train``: rows in any accepted format
(``prompt``/``completion``, ``prompt``/``chosen``/``rejected``, ``messages``, …) are checked
before anything trains — one error naming the argument, the row and the field — then tokenised
with the same truncation rules as the ``data`` section, and the trainer gets the library's
collator. Already tokenised datasets (``input_ids`` columns) pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The `data` section's tokenisation keys, with its defaults, accepted as trainer keywords.
TEXT_OPTIONS = {
    "max_length": 512,
    "max_prompt_length": None,
    "truncation": "truncate_prompt_left",
    "add_special_tokens": False,
    "append_eos": True,
}
TOKENISED = ("input_ids", "chosen_input_ids")


def _is_text(dataset: Any) -> bool:
    if isinstance(dataset, list):
        return bool(dataset) and isinstance(dataset[0], Mapping) and "input_ids" not in dataset[0]
    columns = getattr(dataset, "column_names", None)
    return isinstance(columns, list) and not any(c in columns for c in TOKENISED)


def _tokenised(rows: Any, key: str, tokenizer: Any, rows_kind: str, options: dict) -> tuple:
    from datasets import Dataset

    from irlalign.data.formats import check_in_memory
    from irlalign.data.tokenize import Truncation, tokenize_dataset

    fmt = check_in_memory(rows, key).fmt  # lists too: checked before Arrow sees a bad value
    if isinstance(rows, list):
        rows = Dataset.from_list(rows)
    got = "preference" if fmt.kind == "preference" else "demonstrations"
    if rows_kind not in (got, "any"):
        raise ValueError(f"{key}: this trainer needs {rows_kind} rows, got {fmt.kind} rows")
    trunc = Truncation(options["max_length"], options["max_prompt_length"], options["truncation"])
    add, eos = options["add_special_tokens"], options["append_eos"]
    dataset, _ = tokenize_dataset(rows, tokenizer, trunc, add, eos, key, fmt)
    return dataset, got


def prepare_text_datasets(kwargs: dict[str, Any], rows_kind: str) -> None:
    """Replace text ``train_dataset`` / ``eval_dataset`` keyword arguments by tokenised ones
    (in place), set the collator and keep the columns the losses read. ``rows_kind``:
    "demonstrations", "preference" or "any"."""
    options = {k: kwargs.pop(k, v) for k, v in TEXT_OPTIONS.items()}
    keys = [k for k in ("train_dataset", "eval_dataset") if _is_text(kwargs.get(k))]
    if not keys:
        return
    tokenizer = kwargs.get("processing_class")
    if tokenizer is None:
        raise ValueError(f"{keys[0]}: rows of text need the tokenizer (processing_class=...)")
    kinds = set()
    for key in keys:
        kwargs[key], kind = _tokenised(kwargs[key], key, tokenizer, rows_kind, options)
        kinds.add(kind)
    if len(kinds) > 1:
        raise ValueError("train_dataset and eval_dataset hold different kinds of rows")
    if kwargs.get("data_collator") is None:
        from irlalign.data.collate import collator_for
        from irlalign.modeling.forward import pad_id

        kwargs["data_collator"] = collator_for(kinds.pop(), pad_id(tokenizer, kwargs.get("model")))
    args = kwargs.get("args")
    if args is not None:
        args.remove_unused_columns = False  # completion masks are not model inputs
        if args.label_names is None:
            args.label_names = []


class TextRowsMixin:
    """`prepare_text_datasets` before `Trainer.__init__`; ``rows_kind`` set per trainer."""

    rows_kind = "demonstrations"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        prepare_text_datasets(kwargs, self.rows_kind)
        super().__init__(*args, **kwargs)
