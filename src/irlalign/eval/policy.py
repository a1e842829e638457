"""A policy's likelihood of held-out demonstrations: the mean negative log-likelihood per response
token and its perplexity, what SFT's `loss/mle` measures on the training data."""

from __future__ import annotations

import math

import torch


def evaluate_policy(
    model_path: str, data: str, split: str, *, batch_size: int = 16, max_length: int | None = 1024
) -> dict:
    """`nll_per_token` (mean over all response tokens), `perplexity`, `n_rows`, `n_tokens` of a
    checkpoint, LoRA adapter or run folder (its final checkpoint)."""
    from irlalign.data.collate import collator_for
    from irlalign.data.formats import check_dataset
    from irlalign.data.loading import load_rows
    from irlalign.data.tokenize import Truncation, tokenize_dataset
    from irlalign.eval.checkpoints import (
        is_adapter_folder,
        load_policy_model,
        policy_tokenizer,
        resolve_model,
    )
    from irlalign.modeling.heads import load_heads

    model_path = resolve_model(model_path)  # a run folder: its final checkpoint
    where = f"{data} [{split}]"
    rows = load_rows(data, split)
    fmt = check_dataset(rows, where).fmt  # bad data fails before the model loads
    if fmt.kind == "preference":
        raise ValueError(f"{where}: policy evaluation needs prompt/completion or messages rows")
    tok = policy_tokenizer(model_path)
    ds, _ = tokenize_dataset(rows, tok, Truncation(max_length), source=where, fmt=fmt)
    if len(ds) == 0:
        raise ValueError(f"{where}: no rows left after truncation")
    model = load_policy_model(model_path)
    if not is_adapter_folder(model_path):
        load_heads(model, model_path)
    collate = collator_for("demonstrations", tok.pad_token_id)
    nll, tokens = 0.0, 0
    for start in range(0, len(ds), batch_size):
        batch = collate([ds[i] for i in range(start, min(start + batch_size, len(ds)))])
        logp, mask = response_logps(model, batch)
        nll -= float(logp[mask].sum())
        tokens += int(mask.sum())
    mean = nll / tokens
    return {
        "nll_per_token": mean,
        "perplexity": math.exp(mean),
        "n_rows": len(ds),
        "n_tokens": tokens,
    }


@torch.no_grad()
def response_logps(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log π of the response tokens (B, T) and their mask, as SFT's loss reads them."""
    from irlalign.losses import causal_logps
    from irlalign.modeling.forward import chunk_rows, hidden_and_head

    hidden, head = hidden_and_head(model, batch["input_ids"], batch["attention_mask"])
    chunk = chunk_rows(None, model)
    return causal_logps(
        hidden, batch["input_ids"], batch["completion_mask"], head, chunk_tokens=chunk
    )
