"""The IQLearn implicit reward of a causal LM as a dense `RewardModel`.

The inverse soft Bellman operator of Garg et al. 2021 (*IQ-Learn: Inverse soft-Q Learning for
Imitation*, arXiv 2106.12142), in the form of Wulfmeier et al. 2024 (arXiv 2409.01369), Eq. (14),
whose TD term squares exactly this reward:

    r_t = Q(s_t, a_t) − γ·V(s_{t+1}) = V(s_t) + log π(a_t|s_t) − γ·V(s_{t+1}),

with Q = the logits, V = logsumexp(logits) or the checkpoint's value head V_φ, and V = 0 after
the terminal EOS. The numbers are exactly those `irlalign rewards` writes
(`irlalign.extract.extract_token_rewards`): any causal LM has them, an IQLearn-trained one makes
them a reward. With a reference model its implicit reward is subtracted token by token.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from irlalign.modeling.reward import BatchedReward

PREFIX = "implicit:"  # reward_model spec: "implicit:<checkpoint>" or "implicit:<ckpt>,<reference>"


class ImplicitReward(BatchedReward):
    """`RewardModel` from a causal LM's implicit rewards r_t (minus a reference's, if given).

    Tokenisation is that of every reward model here (`response_batches`: prompt and response
    tokenised separately, EOS appended), so every response ends in the terminal EOS action and
    at γ = 1 the rewards telescope: Σ_t r_t = log π(y, EOS|x) + V(s₀), s₀ the state after the
    prompt. ``score`` is Σ_t r_t at any γ (not the discounted return), so it always equals the
    sum of ``token_rewards``. ``reference`` must share the tokenizer; it is scored with the same
    γ and its own value head, if it has one.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        gamma: float = 1.0,
        reference=None,
        batch_size: int = 64,
        chunk_tokens: int | None = None,
    ):
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        self.model, self.tokenizer, self.gamma = model.eval(), tokenizer, gamma
        self.reference = None if reference is None else reference.eval()
        self.batch_size, self.chunk_tokens = batch_size, chunk_tokens

    def _implicit(self, model, batch: dict[str, Tensor]) -> Tensor:
        """(B, L) r_t of ``model``, indexed like ``input_ids`` (token k's reward at index k)."""
        from irlalign.extract import extract_token_rewards
        from irlalign.modeling.forward import eos_id

        device = next(model.parameters()).device
        moved = {k: v.to(device) for k, v in batch.items()}
        eos = eos_id(self.tokenizer, model)
        tr = extract_token_rewards(
            model, moved, eos_id=eos, gamma=self.gamma, chunk_tokens=self.chunk_tokens
        )
        r = tr.r_hat.float().to(batch["input_ids"].device)
        # Action t generates token t + 1: a leading zero column aligns rewards with input_ids.
        return torch.cat([torch.zeros_like(r[:, :1]), r], dim=1)

    def _per_token(self, batch: dict[str, Tensor]) -> Tensor:
        rewards = self._implicit(self.model, batch)
        if self.reference is not None:
            rewards = rewards - self._implicit(self.reference, batch)
        return rewards

    def _score(self, batch: dict[str, Tensor]) -> Tensor:
        return self._per_token(batch).sum(1)  # zero outside the response

    def _token_rewards(self, batch: dict[str, Tensor]) -> tuple[Tensor, None]:
        return self._per_token(batch), None


def load_causal_lm(path: str | Path):
    """A causal LM, its tokenizer and any heads saved beside it (IQLearn's value head); a LoRA
    adapter folder is merged onto its base, a run folder stands for its final checkpoint."""
    from irlalign.config import ModelOptions
    from irlalign.modeling.adapters import checkpoint_folder
    from irlalign.modeling.heads import load_heads
    from irlalign.modeling.load import load_model, load_tokenizer

    path = checkpoint_folder(path)
    tokenizer = load_tokenizer(str(path))
    tokenizer.padding_side = "right"
    model = load_model(ModelOptions(str(path)))
    load_heads(model, path)
    return model, tokenizer


def check_same_tokenizer(tokenizer, other, what: str) -> None:
    """Two models scored on one tokenisation must share the vocabulary (ids and strings)."""
    if tokenizer.get_vocab() != other.get_vocab():
        raise ValueError(f"{what}: the two models must share one tokenizer (vocabularies differ)")


def split_spec(body: str, n_min: int, n_max: int, spec: str) -> list[str]:
    """The comma-separated model folders of a spec body (folders must not contain commas)."""
    parts = [p.strip() for p in body.split(",")]
    if not n_min <= len(parts) <= n_max or not all(parts):
        raise ValueError(
            f"reward_model {spec!r}: expected {n_min} to {n_max} comma-separated model folders"
        )
    return parts


def load_implicit_reward(spec: str, batch_size: int = 64) -> ImplicitReward:
    """``implicit:<checkpoint>`` or ``implicit:<checkpoint>,<reference>``, at γ = 1."""
    paths = split_spec(spec[len(PREFIX) :], 1, 2, spec)
    model, tokenizer = load_causal_lm(paths[0])
    reference = None
    if len(paths) == 2:
        reference, ref_tokenizer = load_causal_lm(paths[1])
        check_same_tokenizer(tokenizer, ref_tokenizer, spec)
    return ImplicitReward(model, tokenizer, reference=reference, batch_size=batch_size)
