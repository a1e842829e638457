"""One parser for the reward-model strings the library accepts (except ``gold``, which needs a
synthetic task and lives with the loops): a reward-model folder, ``gail:<folder>``,
``implicit:<checkpoint>[,<reference>]`` and ``log_ratio:<policy>,<reference>``."""

from __future__ import annotations

from irlalign.modeling.reward import RewardModel, load_reward_model


def reward_spec_folders(spec: str) -> list[str]:
    """The model folders a ``reward_model`` string names, without loading anything (for checks
    before a run starts)."""
    from irlalign.modeling import gail_reward, implicit_reward, log_ratio

    # each prefix, and whether its folders are a comma-separated pair
    prefixes = {gail_reward.PREFIX: False, implicit_reward.PREFIX: True, log_ratio.PREFIX: True}
    for prefix, paired in prefixes.items():
        if spec.startswith(prefix):
            rest = spec[len(prefix) :]
            return [part.strip() for part in rest.split(",")] if paired else [rest]
    return [spec]


def load_reward_spec(spec: str, batch_size: int = 64) -> RewardModel:
    """The `RewardModel` a ``reward_model`` string names; a plain string is a folder."""
    from irlalign.modeling import gail_reward, implicit_reward, log_ratio

    if spec.startswith(gail_reward.PREFIX):
        discriminator = load_reward_model(spec[len(gail_reward.PREFIX) :], batch_size)
        return gail_reward.GAILReward(discriminator)
    if spec.startswith(implicit_reward.PREFIX):
        return implicit_reward.load_implicit_reward(spec, batch_size)
    if spec.startswith(log_ratio.PREFIX):
        return log_ratio.load_log_ratio_reward(spec, batch_size)
    return load_reward_model(spec, batch_size)
