"""Pure loss functions over tensors: ``(tensors, *, floats) -> (loss, metrics)``.

Maths lives here once (architecture rule 1): this package imports only torch and its own modules.
"""

from irlalign.losses.afd import (
    airl_reward,
    bce_discriminator_loss,
    gail_reward,
    log_ratio_per_token,
    log_ratio_rewards,
)
from irlalign.losses.ava import (
    AVATerms,
    ava_d_loss,
    ava_p_loss,
    ava_token_terms,
    causal_reward_weights,
    full_reward_weights,
    gaussian_log_density,
    head_weights,
    kl_to_std_normal,
    last_token_score,
    ptq_q,
    q_taken,
    summed_score,
    token_rewards,
)
from irlalign.losses.iqlearn import (
    implicit_rewards,
    iqlearn_offline_loss,
    iqlearn_online_expert_loss,
    iqlearn_online_policy_loss,
    sequence_rewards,
    value_step_mean,
)
from irlalign.losses.ops import (
    IQTerms,
    action_masks,
    causal_logps,
    iq_terms,
    token_kl,
    token_stats,
)
from irlalign.losses.preference import bradley_terry_loss, dpo_loss
from irlalign.losses.sft import sft_entropy_loss, sft_loss

__all__ = [
    "airl_reward",
    "bce_discriminator_loss",
    "gail_reward",
    "log_ratio_per_token",
    "log_ratio_rewards",
    "AVATerms",
    "ava_d_loss",
    "ava_p_loss",
    "ava_token_terms",
    "causal_reward_weights",
    "full_reward_weights",
    "gaussian_log_density",
    "head_weights",
    "kl_to_std_normal",
    "last_token_score",
    "ptq_q",
    "q_taken",
    "summed_score",
    "token_rewards",
    "IQTerms",
    "action_masks",
    "bradley_terry_loss",
    "causal_logps",
    "dpo_loss",
    "implicit_rewards",
    "iq_terms",
    "iqlearn_offline_loss",
    "iqlearn_online_expert_loss",
    "iqlearn_online_policy_loss",
    "value_step_mean",
    "sequence_rewards",
    "sft_entropy_loss",
    "sft_loss",
    "token_kl",
    "token_stats",
]
