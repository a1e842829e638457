"""irlalign reward models inside TRL's online trainers.

`as_reward_func` turns any `RewardModel` into a TRL reward function (one float per completion,
for ``GRPOTrainer`` / ``RLOOTrainer`` ``reward_funcs``); it needs nothing from TRL.

`DenseRewardGRPOTrainer` is TRL's ``GRPOTrainer`` with per-token advantages from a dense reward
model: the leave-one-out reward-to-go of RLOO (Ahmadian et al. 2024, arXiv 2402.14740, Eq. 5,
position by position, as `irlalign.losses.policy_gradient.rloo_token_advantages`) in place of
GRPO's one advantage per completion (Shao et al. 2024, arXiv 2402.03300, Sec. 4.1.2, outcome
supervision). TRL's loss takes (B, T) advantages as they are; only the advantage computation is
replaced, so the class depends on TRL's ``_generate_and_score_completions`` returning
``completion_ids``, ``completion_mask`` and ``advantages``, and is only allowed on the TRL
versions in `SUPPORTED_TRL`, which were checked for that.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from irlalign.generation.rewards import dense_on_policy_tokens
from irlalign.losses.policy_gradient import rloo_token_advantages
from irlalign.modeling.reward import ResponseRewards, RewardModel

SUPPORTED_TRL = ("1.16",)  # major.minor releases whose GRPOTrainer internals were checked
SCALES = {"group": "group", "batch": "batch", "none": "none", True: "group", False: "none"}
STD_EPS = 1e-4  # TRL's own epsilon when it divides advantages by a reward std

# DenseRewardGRPOTrainer comes from the module's __getattr__ (it needs TRL at definition).
__all__ = ["DenseRewardGRPOTrainer", "as_reward_func", "completion_texts", "group_advantages"]  # noqa: F822


def _is_chat(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) for m in value)


def completion_texts(
    prompts: Sequence[Any], completions: Sequence[Any], chat_tokenizer=None
) -> tuple[list[str], list[str]]:
    """TRL's prompts and completions as the plain strings a `RewardModel` scores.

    Plain-text rows pass through. Conversational rows (lists of ``{"role", "content"}``
    messages): the prompt is rendered with ``chat_tokenizer``'s chat template and its generation
    prompt, as the irlalign loops render chat prompts; the completion is the text of its
    messages, as TRL decoded it (special tokens skipped).
    """
    if not prompts or not _is_chat(prompts[0]):
        return [str(p) for p in prompts], [str(c) for c in completions]
    if chat_tokenizer is None or not getattr(chat_tokenizer, "chat_template", None):
        raise ValueError(
            "conversational prompts need a tokenizer with a chat template to render them for the "
            "reward model: pass chat_tokenizer= (usually the policy's tokenizer)"
        )
    rendered = [
        chat_tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    texts = ["".join(m.get("content") or "" for m in c) for c in completions]
    return rendered, texts


def as_reward_func(
    reward_model: RewardModel, *, chat_tokenizer=None, name: str | None = None
) -> Callable[..., list[float]]:
    """A TRL reward function: ``f(prompts, completions, **kwargs) -> [float per completion]``,
    the reward model's sequence score (for the dense models here, the sum of token rewards).
    ``chat_tokenizer`` renders conversational prompts (default: the reward model's tokenizer);
    ``name`` is what TRL logs the reward as (default: the reward model's class name)."""
    tokenizer = chat_tokenizer or getattr(reward_model, "tokenizer", None)

    def reward_func(prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
        texts = completion_texts(prompts, completions, tokenizer)
        return [float(s) for s in reward_model.score(*texts)]

    reward_func.__name__ = name or type(reward_model).__name__
    return reward_func


def group_advantages(rewards: Tensor, completion_mask: Tensor, *, k: int, scale: str) -> Tensor:
    """(B, T) per-token advantages from (B, T) per-token rewards of groups of ``k`` consecutive
    completions of one prompt (TRL's layout; columns align: every completion starts at column 0).

    A_t^i = (G_t^i − mean_{j≠i} G_t^j) / s, G_t = Σ_{t'≥t} r_{t'} (γ = 1), with s = 1 for
    ``scale="none"``, the std of the group's returns G_0 (+1e-4) for ``"group"`` and of the whole
    batch's for ``"batch"`` (TRL's ``scale_rewards`` meanings). With k = 1 (TRL's evaluation with
    ``num_generations_eval=1``) there is no baseline: A_t = G_t / s. Zero outside the mask.
    """
    m = completion_mask.bool()
    r = torch.where(m, rewards.float(), torch.zeros_like(rewards, dtype=torch.float32))
    if k >= 2:
        adv = rloo_token_advantages(r, m, k=k)
    else:
        adv = torch.where(m, r.flip(1).cumsum(1).flip(1), torch.zeros_like(r))
    scale = SCALES[scale]
    returns = r.sum(1)
    if scale == "group" and k >= 2:
        std = returns.reshape(-1, k).std(1).repeat_interleave(k)
    elif scale == "batch" and returns.numel() > 1:
        std = returns.std().expand_as(returns)
    else:
        return adv
    return adv / (std[:, None] + STD_EPS)


def require_trl():
    """The `trl` module, when installed at a version whose internals were checked."""
    try:
        import trl
    except ImportError as err:
        raise ImportError("irlalign.integrations.trl needs TRL: pip install 'trl~=1.16.0'") from err
    version = str(getattr(trl, "__version__", "unknown"))
    if ".".join(version.split(".")[:2]) not in SUPPORTED_TRL:
        raise ImportError(
            f"DenseRewardGRPOTrainer overrides GRPOTrainer._generate_and_score_completions, "
            f"checked against TRL {', '.join(SUPPORTED_TRL)}.x; TRL {version} is installed. "
            "as_reward_func works with any version."
        )
    return trl


def token_reward_tensor(
    rows: Sequence[ResponseRewards],
    completion_ids: Tensor,
    completion_mask: Tensor,
    policy_tokenizer,
    rm_tokenizer,
) -> Tensor:
    """(B, T) rewards on the policy's completion tokens (index k: the reward for generating
    ``completion_ids[:, k]``), moved from the reward model's tokens as the irlalign loops move
    them (`dense_on_policy_tokens`: positionally or through character offsets)."""
    if len(rows) != completion_ids.shape[0]:
        raise ValueError(f"{len(rows)} reward rows for {completion_ids.shape[0]} completions")
    out = torch.zeros(completion_ids.shape, dtype=torch.float32)
    for b, row in enumerate(rows):
        positions = completion_mask[b].bool().nonzero().squeeze(1).cpu()
        if positions.numel() == 0:
            continue
        ids = completion_ids[b, positions].tolist()
        values = dense_on_policy_tokens(row, ids, policy_tokenizer, rm_tokenizer)
        out[b, positions] = torch.tensor(values, dtype=torch.float32)
    return out.to(completion_ids.device)


@functools.cache
def _dense_trainer_class() -> type:
    trl = require_trl()

    class DenseRewardGRPOTrainer(trl.GRPOTrainer):
        """``GRPOTrainer`` whose advantages are per token: `group_advantages` of the dense
        reward model's token rewards on each completion (the policy's tokens), with TRL's
        ``num_generations`` as the group and its ``scale_rewards``. TRL's clipped loss, KL
        (``beta``) and logging are unchanged; the logged ``reward`` is the sum of the token
        rewards. Pass ``dense_reward`` instead of ``reward_funcs``; ``chat_tokenizer`` renders
        conversational prompts for the reward model (default: the trainer's tokenizer).
        Single-turn completions only (no tools or environments)."""

        def __init__(
            self, model, dense_reward: RewardModel, args=None, *, chat_tokenizer=None, **kwargs
        ):
            if kwargs.get("reward_funcs") is not None:
                raise ValueError("pass dense_reward only: its token rewards are the reward")
            if kwargs.get("tools") or kwargs.get("environment_factory"):
                raise ValueError("DenseRewardGRPOTrainer scores single-turn completions only")
            self.dense_reward = dense_reward
            self._rows: list[ResponseRewards] = []
            self._chat_tokenizer = chat_tokenizer
            super().__init__(model=model, reward_funcs=self._scored, args=args, **kwargs)

        def _policy_tokenizer(self):
            return getattr(self.processing_class, "tokenizer", self.processing_class)

        def _scored(self, prompts, completions, **_: Any) -> list[float]:
            """TRL's reward function: keeps the token rewards for the advantages, so the reward
            model runs once per batch, and returns their sums for TRL's logging."""
            chat = self._chat_tokenizer or self._policy_tokenizer()
            self._rows = self.dense_reward.token_rewards(
                *completion_texts(prompts, completions, chat)
            )
            return [float(row.rewards.sum()) for row in self._rows]

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            rewards = token_reward_tensor(
                self._rows,
                out["completion_ids"],
                out["completion_mask"],
                self._policy_tokenizer(),
                getattr(self.dense_reward, "tokenizer", None),
            )
            k = self.num_generations if self.model.training else self.num_generations_eval
            out["advantages"] = self._gathered_advantages(rewards, out["completion_mask"], k)
            return out

        def _gathered_advantages(self, rewards: Tensor, mask: Tensor, k: int) -> Tensor:
            """A group may span processes: advantages over the gathered batch, then this
            process's rows, sliced as TRL slices its own advantages."""
            acc, (n, width) = self.accelerator, rewards.shape
            all_rewards = acc.gather(acc.pad_across_processes(rewards, dim=1))
            all_mask = acc.gather(acc.pad_across_processes(mask, dim=1))
            adv = group_advantages(all_rewards, all_mask, k=k, scale=self.scale_rewards)
            start = acc.process_index * n
            return adv[start : start + n, :width]

    return DenseRewardGRPOTrainer


def __getattr__(name: str):
    # The trainer subclasses TRL's: built on first use, so the rest imports without TRL.
    if name == "DenseRewardGRPOTrainer":
        return _dense_trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
