"""Collators: right-pad tokenised rows into `(B, T)` tensors.

Padding is on the right so that position ids and the prompt/response boundary of every row stay
where tokenisation put them; pads get `attention_mask = 0` and `completion_mask = 0`, so no loss
ever reads a pad token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

SEQUENCE_FIELDS = ("input_ids", "attention_mask", "completion_mask")


def padded_length(lengths: Sequence[int], pad_to_multiple_of: int | None = None) -> int:
    """The longest length, rounded up to a multiple of `pad_to_multiple_of` when given."""
    longest = max(lengths, default=0)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    return longest


def pad_right(seqs: Sequence[Sequence[int]], pad_value: int, length: int) -> torch.Tensor:
    """`(B, length)` long tensor of `seqs` right-padded with `pad_value`."""
    out = torch.full((len(seqs), length), pad_value, dtype=torch.long)
    for i, seq in enumerate(seqs):
        if len(seq) > length:
            raise ValueError(f"sequence {i} has {len(seq)} tokens, more than length {length}")
        out[i, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
    return out


def _pad_group(
    features: Sequence[Mapping[str, Any]],
    prefix: str,
    pad_token_id: int,
    length: int,
) -> dict[str, torch.Tensor]:
    pads = {"input_ids": pad_token_id, "attention_mask": 0, "completion_mask": 0}
    return {
        f"{prefix}{name}": pad_right([f[f"{prefix}{name}"] for f in features], pads[name], length)
        for name in SEQUENCE_FIELDS
    }


def _scalars(features: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    return {key: torch.tensor([f[key] for f in features]) for key in keys}


@dataclass
class CompletionCollator:
    """Prompt/completion (and conversational) rows → `input_ids`, `attention_mask`,
    `completion_mask` of shape `(B, T)`; `keep` names scalar fields to pass through as tensors."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    keep: tuple[str, ...] = ()

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(f["input_ids"]) for f in features]
        length = padded_length(lengths, self.pad_to_multiple_of)
        batch = _pad_group(features, "", self.pad_token_id, length)
        return {**batch, **_scalars(features, self.keep)}


@dataclass
class PreferenceCollator:
    """Preference rows → `chosen_*` and `rejected_*` tensors, both padded to one length `T` so
    that `concat_preference_batch` can stack them without re-padding."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    keep: tuple[str, ...] = ()

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(f[f"{side}_input_ids"]) for f in features for side in ("chosen", "rejected")]
        length = padded_length(lengths, self.pad_to_multiple_of)
        batch = {
            **_pad_group(features, "chosen_", self.pad_token_id, length),
            **_pad_group(features, "rejected_", self.pad_token_id, length),
        }
        return {**batch, **_scalars(features, self.keep)}


def _pad_columns(t: torch.Tensor, length: int, value: int) -> torch.Tensor:
    if t.shape[1] == length:
        return t
    return torch.nn.functional.pad(t, (0, length - t.shape[1]), value=value)


def concat_preference_batch(
    batch: Mapping[str, torch.Tensor], pad_token_id: int
) -> dict[str, torch.Tensor]:
    """One `(2B, T)` batch: rows `[:B]` are chosen, rows `[B:]` rejected (one forward pass)."""
    length = max(batch["chosen_input_ids"].shape[1], batch["rejected_input_ids"].shape[1])
    pads = {"input_ids": pad_token_id, "attention_mask": 0, "completion_mask": 0}
    return {
        name: torch.cat(
            [
                _pad_columns(batch[f"{side}_{name}"], length, pads[name])
                for side in ("chosen", "rejected")
            ]
        )
        for name in SEQUENCE_FIELDS
    }


def with_labels(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add HF-style `labels` (−100 outside the completion) so `Trainer` counts the tokens of
    a gradient-accumulation step for us (`num_items_in_batch`)."""
    batch["labels"] = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    return batch


def collator_for(data_kind: str, pad_id: int):
    """Right-padding collator for tokenised demonstrations (with HF `labels`) or pairs."""
    if data_kind == "preference":
        return PreferenceCollator(pad_id)
    completion = CompletionCollator(pad_id)
    return lambda features: with_labels(completion(features))
