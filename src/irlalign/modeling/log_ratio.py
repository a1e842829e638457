"""AfD's zero-training reward: the log-ratio of the SFT policy to the initial one.

r(x, y) = log π_SFT(y|x) − log π_init(y|x) = Σ_t [log π_SFT(a_t|s_t) − log π_init(a_t|s_t)]
(Sun & van der Schaar, arXiv 2405.15624; the optimal Init-SFT discriminator's logit), summed over
the response tokens or divided by their number. It is the baseline every learned AfD reward model
is reported against, with the length-normalised form always shown since the summed one grows
with length, and it needs no training: two causal LMs sharing one tokenizer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from irlalign.modeling.reward import BatchedReward

PREFIX = "log_ratio:"  # reward_model spec: "log_ratio:<policy>,<reference>"


class LogRatioReward(BatchedReward):
    """`RewardModel` from π_SFT (``sft_model``) and π_init (``init_model``).

    ``normalise=False``: score = Σ_t r_t over the response tokens; ``normalise=True``: that sum
    divided by the number of response tokens. Token rewards are r_t = log π_SFT(y_t|·) −
    log π_init(y_t|·) (divided by the length when normalising), so they always sum to the score.
    Tokenisation is that of every other reward model here (`response_batches`: prompt and
    response tokenised separately, EOS appended), so the EOS is scored too. A response token with
    no preceding token (empty prompt, no BOS) has no log-probability and gets reward 0.

    ``model`` is π_SFT (its device is where batches go; π_init is fed on its own device);
    ``tokenizer`` is the shared tokenizer.
    """

    def __init__(
        self,
        sft_model,
        init_model,
        tokenizer,
        *,
        normalise: bool = False,
        batch_size: int = 64,
        chunk_tokens: int | None = None,
    ):
        self.model, self.init_model = sft_model.eval(), init_model.eval()
        self.tokenizer, self.normalise = tokenizer, normalise
        self.batch_size, self.chunk_tokens = batch_size, chunk_tokens

    def _logps(self, model, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Action-aligned (B, L − 1) log π(a_t|s_t) and response mask, on ``batch``'s device."""
        from irlalign.modeling.forward import response_logps

        device = next(model.parameters()).device
        ids, am, cm = (
            batch[k].to(device) for k in ("input_ids", "attention_mask", "completion_mask")
        )
        logp, _ = response_logps(model, ids, am, cm, self.chunk_tokens)
        target = batch["input_ids"].device
        return logp.to(target), batch["completion_mask"][:, 1:].bool()

    def _per_token(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        from irlalign.losses import log_ratio_per_token, log_ratio_rewards

        sft_logps, mask = self._logps(self.model, batch)
        init_logps, _ = self._logps(self.init_model, batch)
        per_token = log_ratio_per_token(sft_logps, init_logps, mask)
        summed, normalised = log_ratio_rewards(sft_logps, init_logps, mask)
        if self.normalise:
            # Same length as log_ratio_rewards divides by, so token rewards sum to the score.
            per_token = per_token / mask.sum(-1, keepdim=True).clamp_min(1)
            return per_token, normalised
        return per_token, summed

    def _score(self, batch: dict[str, Tensor]) -> Tensor:
        return self._per_token(batch)[1]

    def _token_rewards(self, batch: dict[str, Tensor]) -> tuple[Tensor, None]:
        per_token = self._per_token(batch)[0]
        # Action t scores token t + 1; a leading zero column aligns rewards with input_ids,
        # which is how `batched_token_rewards` cuts them (token k's reward at index k).
        lead = torch.zeros_like(per_token[:, :1])
        return torch.cat([lead, per_token], dim=1), None


def load_log_ratio_reward(spec: str, batch_size: int = 64) -> LogRatioReward:
    """``log_ratio:<policy>,<reference>``: summed log π_policy(a_t|s_t) − log π_ref(a_t|s_t)."""
    from irlalign.modeling.implicit_reward import check_same_tokenizer, load_causal_lm, split_spec

    policy_path, reference_path = split_spec(spec[len(PREFIX) :], 2, 2, spec)
    policy, tokenizer = load_causal_lm(policy_path)
    reference, ref_tokenizer = load_causal_lm(reference_path)
    check_same_tokenizer(tokenizer, ref_tokenizer, spec)
    return LogRatioReward(policy, reference, tokenizer, batch_size=batch_size)
