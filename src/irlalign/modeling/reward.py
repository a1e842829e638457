"""The library's reward-model interface and its loader.

Consumers (evaluation, and later RL and best-of-N) depend only on `RewardModel`: one score per
(prompt, response) and per-token rewards over the response tokens. Three implementations share it:
a Bradley–Terry sequence classifier (terminal-only token rewards), the Preference Transformer
(w_t·r_t) and AVA's Gaussian posterior mean (w_t·μ_t, with σ). Every one of them tokenises
exactly as training did: prompt and response separately, EOS appended.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor
from transformers import AutoConfig

from irlalign.modeling.heads import HEADS_CONFIG, get_head, load_heads


@dataclass
class ResponseRewards:
    """Per-token rewards of one response: index k is the reward for generating ``token_ids[k]``."""

    token_ids: list[int]
    rewards: np.ndarray  # (n,) float; sums to the model's return for the response
    sigma: np.ndarray | None = None  # (n,) posterior standard deviation where the model has one


@runtime_checkable
class RewardModel(Protocol):
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """One scalar per (prompt, response) pair, higher = better."""
        ...

    def token_rewards(
        self, prompts: Sequence[str], responses: Sequence[str]
    ) -> list[ResponseRewards]:
        """Per-token rewards over each response's tokens (the RM tokenizer's tokens)."""
        ...


def response_batches(
    model, tokenizer, prompts: Sequence[str], responses: Sequence[str], batch_size: int
) -> Iterator[dict[str, Tensor]]:
    """Right-padded batches with `completion_mask`, tokenised as `irlalign.data.tokenize` does."""
    from irlalign.data.collate import CompletionCollator
    from irlalign.data.formats import DataFormat
    from irlalign.data.tokenize import tokenize_rows

    if len(prompts) != len(responses):
        raise ValueError("prompts and responses must have the same length")
    rows = [{"prompt": p, "completion": r} for p, r in zip(prompts, responses, strict=True)]
    fmt = DataFormat("prompt_completion", conversational=False)
    pad = tokenizer.pad_token_id
    collate = CompletionCollator(pad if pad is not None else 0)
    for start in range(0, len(rows), batch_size):
        feats, _ = tokenize_rows(rows[start : start + batch_size], tokenizer, fmt)
        yield {k: v.to(model.device) for k, v in collate(feats).items()}


@torch.no_grad()
def batched_scores(rm, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """`rm._score` over batches: the shared body of every `RewardModel.score` here."""
    batches = response_batches(rm.model, rm.tokenizer, prompts, responses, rm.batch_size)
    out = [rm._score(b).float().cpu() for b in batches]
    return torch.cat(out).numpy() if out else np.zeros(0)


@torch.no_grad()
def batched_token_rewards(
    rm, prompts: Sequence[str], responses: Sequence[str]
) -> list[ResponseRewards]:
    """`rm._token_rewards` over batches, cut to each response's tokens."""
    out = []
    for batch in response_batches(rm.model, rm.tokenizer, prompts, responses, rm.batch_size):
        rewards, sigma = rm._token_rewards(batch)
        for b in range(batch["input_ids"].shape[0]):
            m = batch["completion_mask"][b].bool()
            out.append(
                ResponseRewards(
                    token_ids=batch["input_ids"][b][m].tolist(),
                    rewards=rewards[b][m].float().cpu().numpy(),
                    sigma=None if sigma is None else sigma[b][m].float().cpu().numpy(),
                )
            )
    return out


def last_positions(attention_mask: Tensor) -> Tensor:
    """(B,) index of the last non-pad token of right-padded rows."""
    return attention_mask.long().sum(1) - 1


def at_last(values: Tensor, attention_mask: Tensor) -> Tensor:
    """(B, T) values -> (B, T) zeros except the last non-pad position, which keeps (B,) values."""
    out = torch.zeros(attention_mask.shape, dtype=values.dtype, device=values.device)
    return out.scatter(1, last_positions(attention_mask)[:, None], values[:, None])


class BatchedReward:
    """`score` and `token_rewards` in batches of `batch_size` through the subclass's `_score`
    or its per-token `_token_rewards` (see `batched_scores` / `batched_token_rewards`)."""

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return batched_scores(self, prompts, responses)

    def token_rewards(
        self, prompts: Sequence[str], responses: Sequence[str]
    ) -> list[ResponseRewards]:
        return batched_token_rewards(self, prompts, responses)


class SequenceClassifierReward(BatchedReward):
    """A sequence-classification model with one label (Bradley–Terry RM): the score is the head's
    output at the last token; as token rewards, all of it sits on the final response token."""

    def __init__(self, model, tokenizer, batch_size: int = 64):
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size

    def _score(self, batch: dict[str, Tensor]) -> Tensor:
        ids, am = batch["input_ids"], batch["attention_mask"]
        return self.model(input_ids=ids, attention_mask=am).logits[:, 0]

    def _token_rewards(self, batch: dict[str, Tensor]) -> tuple[Tensor, None]:
        return at_last(self._score(batch).float(), batch["attention_mask"]), None


class PreferenceTransformerReward(BatchedReward):
    """S(y) = Σ_t w_t r_t; token rewards w_t·r_t on response tokens, with the prompt tokens'
    share (the attention also weighs them) added to the final token so the sum is S(y)."""

    def __init__(self, model, tokenizer, batch_size: int = 64):
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size

    def _parts(self, batch: dict[str, Tensor]) -> Tensor:
        from irlalign.modeling.forward import forward_hidden

        am = batch["attention_mask"]
        hidden, _, _ = forward_hidden(self.model, batch["input_ids"], am)
        w, r = get_head(self.model, "preference")(hidden, am)
        return w * r

    def _score(self, batch: dict[str, Tensor]) -> Tensor:
        return self._parts(batch).sum(1)

    def _token_rewards(self, batch: dict[str, Tensor]) -> tuple[Tensor, None]:
        wr = self._parts(batch)
        cm = batch["completion_mask"].bool()
        prompt_share = torch.where(cm, torch.zeros_like(wr), wr).sum(1)
        last = at_last(prompt_share, batch["attention_mask"])  # the final response token
        return torch.where(cm, wr, torch.zeros_like(wr)) + last, None


class AVAReward(BatchedReward):
    """AVA's posterior mean, read with the shift, reward weights and sequence score the head was
    trained with: score = w_T·μ_T of the final token (AVA-p) or the summed w_k·μ_k over the
    scored transitions (AVA-d); token rewards w_k·μ_k (σ scaled alike)."""

    def __init__(self, model, tokenizer, batch_size: int = 64):
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size

    def _posterior(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        from irlalign.losses.ava import RWT_NONE, head_weights
        from irlalign.modeling.forward import forward_hidden

        head = get_head(self.model, "reward")
        ids, am = batch["input_ids"], batch["attention_mask"]
        hidden, _, attn = forward_hidden(self.model, ids, am, attentions=head.rwt != RWT_NONE)
        mu, sigma = head(hidden)
        _, w = head_weights(
            attn, am, batch["completion_mask"], rwt=head.rwt, rescale=head.rwt_rescale,
            shift=head.shift,
        )  # fmt: skip
        if w is not None:
            mu, sigma = mu * w, (sigma * w).clamp_min(1e-6)
        return mu, sigma

    def _score(self, batch: dict[str, Tensor]) -> Tensor:
        from irlalign.losses.ava import last_token_score, summed_score

        head = get_head(self.model, "reward")
        mu = self._posterior(batch)[0]
        if head.score == "sum":
            return summed_score(mu, batch["completion_mask"], shift=head.shift)
        return last_token_score(mu, batch["attention_mask"], shift=head.shift)

    def _token_rewards(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        from irlalign.losses.ava import token_rewards

        mu, sigma = self._posterior(batch)
        shift = get_head(self.model, "reward").shift
        cm = batch["completion_mask"]
        return token_rewards(mu, cm, shift=shift), token_rewards(sigma, cm, shift=shift)


def set_ava_attention(model, rwt: str) -> None:
    """The attention implementation an AVA head's reward weights read (none for ``rwt: none``)."""
    from irlalign.modeling.attention import use_causal_weights_attention, use_scores_attention

    if rwt == "attn_causal":
        use_causal_weights_attention(model)
    elif rwt != "none":
        use_scores_attention(model)


def is_reward_model_folder(path: str | Path) -> bool:
    """True for the folders `load_reward_model` reads: an AVA / Preference-Transformer head
    beside the model, or a sequence classifier with one label; a LoRA adapter of either (heads
    beside it, or a sequence-classification adapter); a run folder whose final checkpoint is
    one of these."""
    from irlalign.modeling.adapters import adapter_task, checkpoint_folder, is_adapter_folder

    path = Path(checkpoint_folder(path))
    if _head_names(path) & {"reward", "preference"}:
        return True
    if is_adapter_folder(path):
        return adapter_task(path) == "SEQ_CLS"
    if not (path / "config.json").exists():
        return False
    config = AutoConfig.from_pretrained(path)
    causal = any(a.endswith("ForCausalLM") for a in config.architectures or [])
    return getattr(config, "num_labels", None) == 1 and not causal


def _head_names(folder: Path) -> set[str]:
    heads_file = folder / HEADS_CONFIG
    return set(json.loads(heads_file.read_text())) if heads_file.is_file() else set()


def load_reward_model(path: str | Path, batch_size: int = 64) -> RewardModel:
    """Load any reward-model folder the library writes: a Bradley–Terry sequence classifier
    (`num_labels == 1`), or a causal LM with a Preference-Transformer or AVA head beside it;
    either as a LoRA adapter folder (merged onto its base model), and a run folder as its final
    checkpoint. Whatever the folder's files make `from_pretrained` raise becomes one ValueError
    naming it."""
    from irlalign.modeling.adapters import checkpoint_folder, is_adapter_folder

    path = Path(checkpoint_folder(path))
    if not (path / "config.json").exists() and not is_adapter_folder(path):
        raise FileNotFoundError(
            f"{path}: no config.json (nor a LoRA adapter, nor a finished run folder); not a "
            "reward-model folder"
        )
    try:
        return _load_reward_model(path, batch_size)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as err:  # corrupt weights or heads, an unknown architecture
        from irlalign.errors import root_cause

        raise ValueError(f"{path}: cannot load the reward model ({root_cause(err)})") from err


def _load_reward_model(path: Path, batch_size: int) -> RewardModel:
    """Every kind through `load_model`, the one loader that merges LoRA adapters."""
    from irlalign.config import ModelOptions
    from irlalign.modeling.adapters import is_adapter_folder
    from irlalign.modeling.load import load_model, load_tokenizer

    tokenizer = load_tokenizer(str(path))
    tokenizer.padding_side = "right"
    heads = _head_names(path)
    options = ModelOptions(str(path), dtype=_saved_dtype(str(path)))
    for name, cls in (("reward", AVAReward), ("preference", PreferenceTransformerReward)):
        if name in heads:
            model = load_model(options, "causal_lm")
            load_heads(model, path)
            if cls is AVAReward:
                set_ava_attention(model, get_head(model, name).rwt)
            return cls(model, tokenizer, batch_size)
    if not is_adapter_folder(path):
        config = AutoConfig.from_pretrained(path)
        if getattr(config, "num_labels", None) != 1:
            raise ValueError(
                f"{path}: not a reward model: expected a sequence classifier with num_labels=1 "
                f"or an AVA / Preference-Transformer head ({HEADS_CONFIG}), got "
                f"architectures={config.architectures} num_labels={config.num_labels}"
            )
    elif not is_reward_model_folder(path):
        raise ValueError(
            f"{path}: a causal-LM LoRA adapter with no reward head, not a reward model; it "
            f"judges as implicit:{path} (its IQLearn reward) or log_ratio:{path},<reference>"
        )
    model = load_model(options, "reward")
    return SequenceClassifierReward(model, tokenizer, batch_size)


def _saved_dtype(path: str) -> str:
    """The dtype the weights were saved in (a reward model is scored as it was saved, as
    `from_pretrained` does by default); float32 when the config names none we load."""
    from irlalign.modeling.load import DTYPES, read_model_config

    config = read_model_config(path)
    name = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return name if name in DTYPES else "float32"
