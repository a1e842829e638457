"""Glue for preference batches: stack chosen and rejected into one forward pass."""

from __future__ import annotations

import torch
from torch import Tensor

FIELDS = ("input_ids", "attention_mask", "completion_mask")


def stack_pairs(inputs: dict[str, Tensor], pad_id: int) -> dict[str, Tensor]:
    """(2B, L) tensors: rows [0, B) are the chosen responses, rows [B, 2B) the rejected ones."""
    width = max(inputs["chosen_input_ids"].shape[1], inputs["rejected_input_ids"].shape[1])
    out = {}
    for field in FIELDS:
        fill = pad_id if field == "input_ids" else 0
        parts = []
        for side in ("chosen", "rejected"):
            x = inputs[f"{side}_{field}"]
            parts.append(torch.nn.functional.pad(x, (0, width - x.shape[1]), value=fill))
        out[field] = torch.cat(parts, dim=0)
    return out


def pad_id_of(trainer) -> int:
    tok = trainer.processing_class
    pad = getattr(tok, "pad_token_id", None)
    return int(pad if pad is not None else 0)
