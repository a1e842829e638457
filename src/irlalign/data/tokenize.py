"""Tokenise datasets into `input_ids`, `attention_mask` and `completion_mask` (1 = response token).

Prompt and completion are tokenised separately and concatenated, so the boundary between them is
exact even for BPE tokenizers that would merge tokens across it. Conversations go through the
tokenizer's chat template; the mask covers the final assistant turn, found as the tokens after
the rendered prompt (with the generation prompt), which must be a token prefix of the full
rendering — a template where it is not cannot be masked safely, so it is an error.

A text the tokenizer cannot encode (a word-level vocabulary without an unknown token meets a new
word) or a conversation the chat template cannot render fails with one `TokenizationError` naming
the source, row and field, found by retrying the failed batch row by row.

Truncation is explicit (`Truncation`) and counted (`TruncationStats`) so that a trainer can report
how much of its data it did not see. A completion cut on the right loses its EOS on purpose: the
model then sees an unfinished response, not a fabricated ending.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from datasets import Dataset

from irlalign.data.formats import DataFormat, check_dataset, validate_rows
from irlalign.errors import root_cause

Strategy = Literal["truncate_prompt_left", "drop"]


class TokenizationError(ValueError):
    """A row that cannot be tokenised as asked (e.g. a chat template that is not prefix-safe)."""


@dataclass(frozen=True)
class Truncation:
    """How rows longer than the limits are handled.

    `truncate_prompt_left` (default): the prompt keeps its last `max_prompt_length` tokens (and
    never more than `max_length - 1`, so one response token always fits); then the completion is
    cut on the right to fit `max_length`. `drop`: rows over either limit are skipped.
    """

    max_length: int | None = None
    max_prompt_length: int | None = None
    strategy: Strategy = "truncate_prompt_left"

    def __post_init__(self) -> None:
        for name in ("max_length", "max_prompt_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive integer or None, got {value}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError("max_length must leave room for one prompt and one response token")
        if (
            self.max_length is not None
            and self.max_prompt_length is not None
            and self.max_prompt_length >= self.max_length
        ):
            raise ValueError(
                f"max_prompt_length ({self.max_prompt_length}) must be < max_length "
                f"({self.max_length}) to leave room for the response"
            )
        if self.strategy not in ("truncate_prompt_left", "drop"):
            raise ValueError(f"unknown truncation strategy {self.strategy!r}")


@dataclass
class TruncationStats:
    """Row counts; for preferences a row counts once even when both sides were cut."""

    rows: int = 0
    kept: int = 0
    prompt_truncated: int = 0
    completion_truncated: int = 0
    dropped: int = 0

    def as_metrics(self, prefix: str = "data/") -> dict[str, int]:
        return {f"{prefix}{k}": v for k, v in asdict(self).items()}


def truncate(
    prompt_ids: list[int], completions: Sequence[list[int]], truncation: Truncation
) -> tuple[list[int], list[list[int]], bool, bool] | None:
    """Apply `truncation` to one prompt and its completion(s) (one, or chosen + rejected).

    Returns (prompt_ids, completions, prompt_cut, completion_cut), or None when the row is dropped.
    """
    prompt_cap = truncation.max_prompt_length
    if truncation.max_length is not None:
        limit = truncation.max_length - 1
        prompt_cap = limit if prompt_cap is None else min(prompt_cap, limit)
    too_long_prompt = prompt_cap is not None and len(prompt_ids) > prompt_cap
    room = None if truncation.max_length is None else truncation.max_length - len(prompt_ids)
    if truncation.strategy == "drop":
        too_long = room is not None and any(len(c) > room for c in completions)
        if too_long_prompt or too_long:
            return None
        return prompt_ids, list(completions), False, False
    if too_long_prompt:
        prompt_ids = prompt_ids[len(prompt_ids) - prompt_cap :]
    if truncation.max_length is None:
        return prompt_ids, list(completions), too_long_prompt, False
    room = truncation.max_length - len(prompt_ids)
    cut = any(len(c) > room for c in completions)
    return prompt_ids, [c[:room] for c in completions], too_long_prompt, cut


def sequence(prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> dict[str, list[int]]:
    """One training sequence: prompt then completion, the mask on the completion only."""
    return {
        "input_ids": [*prompt_ids, *completion_ids],
        "attention_mask": [1] * (len(prompt_ids) + len(completion_ids)),
        "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids),
    }


def _encode(
    tokenizer: Any, texts: list[str], add_special_tokens: bool, where: Sequence[str]
) -> list[list[int]]:
    """Token ids of `texts`; `where[i]` locates text i ("source: row n: field 'x'")."""
    if not texts:
        return []
    try:
        return list(tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"])
    except Exception as err:  # tokenizers raises a bare Exception for unencodable text
        raise encoding_failure(tokenizer, texts, add_special_tokens, where, err) from err


def encoding_failure(
    tokenizer: Any,
    texts: Sequence[str],
    add_special_tokens: bool,
    where: Sequence[str],
    err: Exception,
) -> TokenizationError:
    """The error of a failed batch, located by encoding its texts one by one."""
    for i, text in enumerate(texts):
        try:
            tokenizer([text], add_special_tokens=add_special_tokens)
        except Exception as row_err:
            word = _unencodable_word(tokenizer, text)
            what = f"the word {word!r} is not in its vocabulary" if word else root_cause(row_err)
            return TokenizationError(f"{where[i]}: the tokenizer cannot encode this text ({what})")
    return TokenizationError(f"{where[0]}: tokenising the batch failed ({root_cause(err)})")


def _unencodable_word(tokenizer: Any, text: str) -> str | None:
    """The first whitespace-separated word the tokenizer fails on (a word-level vocabulary
    without an unknown token), or None when no single word fails."""
    for word in text.split():
        try:
            tokenizer([word], add_special_tokens=False)
        except Exception:
            return word
    return None


def _render(tokenizer: Any, messages: list, generation_prompt: bool, where: str) -> str:
    try:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
    except Exception as err:  # jinja errors, or a tokenizer without a chat template
        raise TokenizationError(
            f"{where}: the tokenizer's chat template cannot render this conversation "
            f"({root_cause(err)})"
        ) from err


def _chat_parts(row: Mapping[str, Any], fmt: DataFormat) -> tuple[list, list[list]]:
    """(prompt messages, full conversations) of a conversational row."""
    if fmt.kind == "messages":
        return row["messages"][:-1], [row["messages"]]
    sides = ("completion",) if fmt.kind == "prompt_completion" else ("chosen", "rejected")
    return row["prompt"], [[*row["prompt"], *row[s]] for s in sides]


def _split_chat(
    prompt_ids: list[int], full_ids: list[int], texts: tuple[str, str], where: str
) -> list[int]:
    """The completion tokens of a full rendering whose first tokens must be the prompt's."""
    n = len(prompt_ids)
    if full_ids[:n] != prompt_ids:
        raise TokenizationError(
            f"{where}: the chat template is not prefix-safe: the prompt rendered with "
            "add_generation_prompt=True does not tokenise to a prefix of the full conversation, "
            f"so the assistant turn cannot be masked exactly.\n  prompt: {texts[0]!r}\n"
            f"  full:   {texts[1]!r}"
        )
    if len(full_ids) == n:
        raise TokenizationError(f"{where}: the chat template rendered an empty assistant turn")
    return full_ids[n:]


def _chat_ids(
    tokenizer: Any, rows: Sequence[Mapping[str, Any]], fmt: DataFormat, where: list[str]
) -> list[tuple[list[int], list[list[int]]]]:
    """(prompt ids, completion ids per side) for conversational rows."""
    parts = [_chat_parts(row, fmt) for row in rows]
    prompts = [_render(tokenizer, p, True, where[i]) for i, (p, _) in enumerate(parts)]
    fulls = [
        [_render(tokenizer, f, False, where[i]) for f in fs] for i, (_, fs) in enumerate(parts)
    ]
    # Templates write their own special tokens (bos, turn markers): never add them again.
    prompt_ids = _encode(tokenizer, prompts, False, where)
    flat = [t for fs in fulls for t in fs]
    flat_where = [where[i] for i, fs in enumerate(fulls) for _ in fs]
    flat_ids = iter(_encode(tokenizer, flat, False, flat_where))
    out = []
    for i, (p_ids, texts) in enumerate(zip(prompt_ids, fulls, strict=True)):
        sides = [_split_chat(p_ids, next(flat_ids), (prompts[i], t), where[i]) for t in texts]
        out.append((p_ids, sides))
    return out


def _text_ids(
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    fmt: DataFormat,
    add_special_tokens: bool,
    append_eos: bool,
    where: list[str],
) -> list[tuple[list[int], list[list[int]]]]:
    """(prompt ids, completion ids per side) for plain-text rows, tokenised separately."""
    sides = ("completion",) if fmt.kind == "prompt_completion" else ("chosen", "rejected")
    eos = tokenizer.eos_token_id
    if append_eos and eos is None:
        raise TokenizationError("append_eos=True but the tokenizer has no eos_token_id")

    def encode(name: str) -> list[list[int]]:
        texts = [row[name] for row in rows]
        located = [f"{w}: field {name!r}" for w in where]
        return _encode(tokenizer, texts, add_special_tokens, located)

    prompt_ids = encode("prompt")
    side_ids = [encode(s) for s in sides]
    out = []
    for i, p_ids in enumerate(prompt_ids):
        if not p_ids:
            # A prompt of no tokens leaves the first response token without any context.
            raise TokenizationError(f"{where[i]}: field 'prompt': the tokenizer gives no tokens")
        comps = [list(ids[i]) for ids in side_ids]
        if append_eos:
            # Data that already ends with the EOS text keeps exactly one EOS.
            comps = [c if c and c[-1] == eos else [*c, eos] for c in comps]
        out.append((list(p_ids), comps))
    return out


def _features(
    prompt_ids: list[int], completions: list[list[int]], fmt: DataFormat
) -> dict[str, list[int]]:
    if fmt.kind != "preference":
        return sequence(prompt_ids, completions[0])
    chosen, rejected = (sequence(prompt_ids, c) for c in completions)
    return {
        **{f"chosen_{k}": v for k, v in chosen.items()},
        **{f"rejected_{k}": v for k, v in rejected.items()},
    }


def tokenize_rows(
    rows: Sequence[Mapping[str, Any]],
    tokenizer: Any,
    fmt: DataFormat,
    truncation: Truncation | None = None,
    add_special_tokens: bool = False,
    append_eos: bool = True,
    source: str = "dataset",
    first_index: int = 0,
) -> tuple[list[dict[str, Any]], TruncationStats]:
    """Tokenise already-validated rows; dropped rows are left out of the returned features.

    Features are `input_ids`, `attention_mask`, `completion_mask` (preference rows: the same with
    `chosen_` and `rejected_` prefixes, sharing the prompt), plus the row's non-text fields.
    `add_special_tokens` and `append_eos` apply to plain-text rows only: a chat template writes
    its own special tokens.
    """
    truncation = truncation or Truncation()
    where = [f"{source}: row {first_index + i}" for i in range(len(rows))]
    if fmt.conversational:
        ids = _chat_ids(tokenizer, rows, fmt, where)
    else:
        ids = _text_ids(tokenizer, rows, fmt, add_special_tokens, append_eos, where)
    stats = TruncationStats(rows=len(rows))
    features = []
    for row, (prompt_ids, completions) in zip(rows, ids, strict=True):
        result = truncate(prompt_ids, completions, truncation)
        if result is None:
            stats.dropped += 1
            continue
        prompt_ids, completions, prompt_cut, completion_cut = result
        stats.prompt_truncated += prompt_cut
        stats.completion_truncated += completion_cut
        extra = {k: v for k, v in row.items() if k not in fmt.fields}
        features.append({**extra, **_features(prompt_ids, completions, fmt)})
    stats.kept = len(features)
    return features, stats


def _chunk(dataset: Any, start: int, stop: int) -> list[dict[str, Any]]:
    if isinstance(dataset, Dataset):
        # One columnar slice is far faster than indexing rows one by one.
        columns = dataset[start:stop]
        values = list(zip(*columns.values(), strict=True))
        return [dict(zip(columns, row, strict=True)) for row in values]
    return [dict(row) for row in dataset[start:stop]]


def tokenize_dataset(
    dataset: Dataset | Sequence[Mapping[str, Any]],
    tokenizer: Any,
    truncation: Truncation | None = None,
    add_special_tokens: bool = False,
    append_eos: bool = True,
    source: str = "dataset",
    fmt: DataFormat | None = None,
    chunk_size: int = 1024,
) -> tuple[Dataset, TruncationStats]:
    """Validate every row, then tokenise; returns the tokenised dataset and truncation counts.

    The format is detected from the columns unless `fmt` is given. Text columns are replaced by
    the token columns; other columns (e.g. `true_return`) are kept for the rows that survive.
    """
    if fmt is None:
        fmt = check_dataset(dataset, source).fmt
    else:
        validate_rows(dataset, fmt, source)
    total = TruncationStats()
    features: list[dict[str, Any]] = []
    # Chunks keep the batch tokenizer fast without materialising every string at once.
    for start in range(0, len(dataset), chunk_size):
        stop = min(start + chunk_size, len(dataset))
        rows = _chunk(dataset, start, stop)
        part, stats = tokenize_rows(
            rows, tokenizer, fmt, truncation, add_special_tokens, append_eos, source, start
        )
        features.extend(part)
        for key, value in asdict(stats).items():
            setattr(total, key, getattr(total, key) + value)
    if not features:
        raise TokenizationError(f"{source}: every row was dropped by truncation {truncation}")
    columns = {key: [f[key] for f in features] for key in features[0]}
    return Dataset.from_dict(columns), total
