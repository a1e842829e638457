"""Rewards extracted from a trained causal LM by IQLearn's inverse soft Bellman operator.

r_t = Q(s_t, a_t) − γ V(s_{t+1}) = V(s_t) + log π(a_t|s_t) − γ V(s_{t+1}), V = logsumexp(logits),
V(terminal) = 0; any causal LM has these numbers, an IQLearn-trained one makes them meaningful.
Truncated responses (no EOS) always bootstrap their last term and are flagged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from irlalign.data.collate import collator_for
from irlalign.losses import iq_terms, sequence_rewards
from irlalign.modeling.forward import chunk_rows, hidden_and_head
from irlalign.modeling.heads import VALUE_HEAD, get_head


@dataclass
class TokenRewards:
    r_hat: Tensor  # (B, T) per-token r_t, 0 outside completion_mask
    completion_mask: Tensor  # (B, T) action-aligned: index t scores input_ids[:, t + 1]
    per_token_logps: Tensor  # (B, T)
    v: Tensor  # (B, T) V(s_t)
    sequence_reward: Tensor  # (B,) Σ_t r_t
    sequence_reward_discounted: Tensor  # (B,) Σ_t γ^t r_t from the first response token
    sequence_logp: Tensor  # (B,) log π(y|x)
    v0: Tensor  # (B,) V(s_0)
    truncated: Tensor  # (B,) no EOS; last term bootstrapped


@torch.no_grad()
def extract_token_rewards(
    model,
    batch: dict[str, Tensor],
    *,
    eos_id: int,
    gamma: float = 1.0,
    chunk_tokens: int | None = None,
) -> TokenRewards:
    """Per-token and per-sequence rewards of a right-padded causal batch."""
    was_training = model.training
    model.eval()
    hidden, head = hidden_and_head(model, batch["input_ids"], batch["attention_mask"])
    # A checkpoint trained with the value-head ablation carries V_φ; use it as V when present.
    value_fn = get_head(model, VALUE_HEAD)
    terms = iq_terms(
        hidden,
        batch["input_ids"],
        batch["completion_mask"],
        head,
        eos_id=eos_id,
        gamma=gamma,
        chunk_tokens=chunk_rows(chunk_tokens, model),
        value_fn=value_fn,
    )
    model.train(was_training)
    seq = sequence_rewards(terms.logp, terms.r_hat, terms.v, terms.mask, gamma=gamma)
    zeros = torch.zeros_like(terms.r_hat)
    return TokenRewards(
        r_hat=torch.where(terms.mask, terms.r_hat, zeros),
        completion_mask=terms.mask,
        per_token_logps=torch.where(terms.mask, terms.logp, zeros),
        v=terms.v,
        truncated=terms.truncated.any(1),
        **seq,
    )


def _validated_rows(data: str, split: str, max_rows: int | None):
    """The first ``max_rows`` rows of a split, validated (file/row/field errors), and format."""
    from irlalign.data.formats import check_dataset
    from irlalign.data.loading import load_rows

    rows = load_rows(data, split)
    if max_rows is not None:
        rows = rows.select(range(min(max_rows, len(rows))))
    return rows, check_dataset(rows, f"{data} [{split}]").fmt


def extract_to_jsonl(
    model_path: str,
    data: str,
    out: str | Path,
    *,
    split: str = "train",
    gamma: float = 1.0,
    batch_size: int = 16,
    max_length: int | None = 1024,
    max_rows: int | None = None,
) -> int:
    """Write one JSON line per (prompt, response) row: tokens, rewards per token and the sums."""
    from irlalign.data.tokenize import Truncation, tokenize_dataset
    from irlalign.modeling.heads import load_heads
    from irlalign.modeling.load import ModelOptions, load_model, load_tokenizer

    tok = load_tokenizer(model_path)
    model = load_model(ModelOptions(model_path))
    load_heads(model, model_path)
    rows, fmt = _validated_rows(data, split, max_rows)
    if fmt.kind == "preference":
        raise ValueError(f"{data}: reward extraction needs prompt/completion or messages rows")
    ds, _ = tokenize_dataset(rows, tok, Truncation(max_length), source=f"{data} [{split}]", fmt=fmt)
    collate = collator_for("demonstrations", tok.pad_token_id)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        for start in range(0, len(ds), batch_size):
            feats = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
            batch = collate(feats)
            tr = extract_token_rewards(model, batch, eos_id=tok.eos_token_id, gamma=gamma)
            for b in range(len(feats)):
                f.write(json.dumps(_row(tok, batch["input_ids"][b], tr, b)) + "\n")
    return len(ds)


def token_pieces(tokenizer, ids: list[int]) -> list[str]:
    """Each token decoded on its own, so the pieces read as text (" Cook", not the byte-level
    spelling "ĠCook") and join back into the response."""
    return [tokenizer.decode([i]) for i in ids]


def _row(tok, input_ids: Tensor, tr: TokenRewards, b: int) -> dict:
    mask = tr.completion_mask[b]
    actions = input_ids[1:][mask]
    return {
        "tokens": token_pieces(tok, actions.tolist()),
        "rewards": tr.r_hat[b][mask].tolist(),
        "logp": tr.per_token_logps[b][mask].tolist(),
        "sequence_reward": float(tr.sequence_reward[b]),
        "sequence_reward_discounted": float(tr.sequence_reward_discounted[b]),
        "sequence_logp": float(tr.sequence_logp[b]),
        "v0": float(tr.v0[b]),
        "truncated": bool(tr.truncated[b]),
    }


def reward_model_to_jsonl(
    rm_path: str,
    data: str,
    out: str | Path,
    *,
    split: str = "train",
    batch_size: int = 16,
    max_rows: int | None = None,
) -> int:
    """Per-token rewards of a reward model (BT, Preference Transformer, AVA) on plain-text
    prompt/completion rows: one JSON line per row with tokens, rewards, σ (AVA) and the score."""
    from irlalign.modeling.reward import load_reward_model

    rm = load_reward_model(rm_path, batch_size=batch_size)
    rows, fmt = _validated_rows(data, split, max_rows)
    if fmt.kind != "prompt_completion" or fmt.conversational:
        raise ValueError(f"{data}: reward-model rewards need plain-text prompt/completion rows")
    prompts, responses = list(rows["prompt"]), list(rows["completion"])
    scores = rm.score(prompts, responses)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        for row, score in zip(rm.token_rewards(prompts, responses), scores, strict=True):
            record = {
                "tokens": token_pieces(rm.tokenizer, list(row.token_ids)),
                "rewards": row.rewards.tolist(),
                "sigma": None if row.sigma is None else row.sigma.tolist(),
                "score": float(score),
            }
            f.write(json.dumps(record) + "\n")
    return len(prompts)
