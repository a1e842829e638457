"""Glue for preference batches: chosen and rejected rows go through one forward pass."""

from __future__ import annotations

from torch import Tensor

from irlalign.data.collate import concat_preference_batch


def stack_pairs(inputs: dict[str, Tensor], pad_id: int) -> dict[str, Tensor]:
    """(2B, L) tensors: rows [0, B) are the chosen responses, rows [B, 2B) the rejected ones."""
    return concat_preference_batch(inputs, pad_id)


def pad_id_of(trainer) -> int:
    tok = trainer.processing_class
    pad = getattr(tok, "pad_token_id", None)
    return int(pad if pad is not None else 0)
