"""Glue shared by the explicit online loops (RLOO, PPO, and the AfD / adversarial outer loops):
the loop's `training` section, prompts, reward models, rollouts with their rewards, teacher-forced
log-probs, checkpoints that resume exactly, metrics and the synthetic evaluation.

The loops themselves (`rloo.py`, `ppo.py`) stay readable top to bottom; everything here is a
plain function or a small dataclass they call.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from irlalign.generation.sampling import HFSampler, Rollouts, SamplingConfig
from irlalign.modeling.reward import RewardModel
from irlalign.trainers.common import response_logps

GOLD = "gold"  # reward_model value: the synthetic task's true reward r* (needs eval.synthetic_task)
STATE_FILE = "loop_state.pt"


@dataclass
class LoopArgs:
    """The `training` section of an online method (the loops do not use `TrainingArguments`)."""

    output_dir: str
    max_steps: int = 100
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    warmup_steps: int = 0
    seed: int = 42
    logging_steps: int = 1
    save_steps: int = 50
    save_total_limit: int | None = 2
    eval_steps: int | None = None  # synthetic evaluation every N steps (None: at the end only)
    use_cpu: bool = False
    bf16: bool = False
    resume_from_checkpoint: bool | str | None = None  # true = the latest `step_<n>` folder
    report_to: str | list[str] = "none"  # "tensorboard", "wandb" (through accelerate)
    disable_tqdm: bool = False

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.save_steps < 1 or self.logging_steps < 1:
            raise ValueError("max_steps, save_steps and logging_steps must be >= 1")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise ValueError("eval_steps must be >= 1 or null")


def check_reward_fields(cfg: Any) -> None:
    """Validation shared by the RL configs' reward fields (`reward_model`, `reward_mode`,
    `reward_norm`, `kl_coef`)."""
    if cfg.reward_mode not in ("dense", "terminal"):
        raise ValueError("reward_mode must be 'dense' or 'terminal'")
    if cfg.reward_norm not in ("none", "batch", "initial"):
        raise ValueError("reward_norm must be 'none', 'batch' or 'initial'")
    if cfg.kl_coef < 0:
        raise ValueError("kl_coef must be >= 0")
    if not cfg.reward_model:
        raise ValueError("reward_model is required: a reward-model folder, or 'gold'")


def sampling_config(value: SamplingConfig | dict[str, Any] | None) -> SamplingConfig:
    """YAML gives a mapping; code may pass the dataclass."""
    if isinstance(value, SamplingConfig):
        return value
    return SamplingConfig(**(value or {}))


# ---------------------------------------------------------------------------------------------
# prompts


def load_prompts(spec: str, split: str, tokenizer, max_rows: int | None = None) -> list[str]:
    """Prompt strings of any supported dataset (validated first); chat prompts are rendered with
    the tokenizer's template and its generation prompt, as training data would be."""
    from irlalign.data.formats import check_dataset
    from irlalign.data.loading import load_rows

    rows = load_rows(spec, split)
    if max_rows is not None:
        rows = rows.select(range(min(max_rows, len(rows))))
    fmt = check_dataset(rows, f"{spec} [{split}]").fmt
    if fmt.kind == "messages":
        msgs = [r[:-1] for r in rows["messages"]]
    elif fmt.conversational:
        msgs = list(rows["prompt"])
    else:
        return list(dict.fromkeys(rows["prompt"]))
    rendered = [
        tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in msgs
    ]
    return list(dict.fromkeys(rendered))


def prompt_batch(
    prompts: list[str], step: int, n: int, seed: int, rank: int = 0, world: int = 1
) -> list[str]:
    """Process ``rank``'s ``n`` prompts of (0-based) ``step``: epochs of seeded shuffles, a pure
    function of the step so that a resumed run draws exactly the prompts it would have."""
    out = []
    for i in range(n):
        epoch, pos = divmod((step * world + rank) * n + i, len(prompts))
        order = np.random.default_rng([seed, epoch]).permutation(len(prompts))
        out.append(prompts[int(order[pos])])
    return out


# ---------------------------------------------------------------------------------------------
# models


def load_reward(spec: str, task_dir: str | None, tokenizer) -> RewardModel:
    from irlalign.modeling.reward import load_reward_model

    if spec == GOLD:
        if not task_dir:
            raise ValueError("reward_model 'gold' needs eval.synthetic_task (the task folder)")
        from irlalign.synthetic.build import load_task
        from irlalign.synthetic.gold import GoldReward

        return GoldReward(load_task(task_dir), tokenizer)
    from irlalign.modeling.gail_reward import PREFIX, GAILReward

    if spec.startswith(PREFIX):
        return GAILReward(load_reward_model(spec[len(PREFIX) :]))
    return load_reward_model(spec)


@torch.no_grad()
def reference_logps(ref, rollouts: Rollouts, device, chunk_tokens: int | None) -> Tensor:
    ids, am, cm = (
        t.to(device)
        for t in (rollouts.input_ids, rollouts.attention_mask, rollouts.completion_mask)
    )
    return response_logps(ref, ids, am, cm, chunk_tokens)[0]


def sample(policy, tokenizer, sampling: SamplingConfig, prompts: list[str], k: int, seed: int):
    """Rollouts of the current policy (dropout off), seeded so a resumed step redraws them."""
    from irlalign.trainers.common import unwrap

    torch.manual_seed(seed)
    model = unwrap(policy)
    was_training = model.training
    rollouts = HFSampler(model.eval(), tokenizer, sampling).sample(prompts, k)
    model.train(was_training)
    return rollouts


def action_mask(rollouts: Rollouts) -> Tensor:
    return rollouts.completion_mask[:, 1:].bool()


def reward_stats(rewards: Tensor, mask: Tensor) -> tuple[float, float]:
    """Mean and std of per-sequence returns."""
    totals = torch.where(mask, rewards, torch.zeros_like(rewards)).sum(1)
    return float(totals.mean()), float(totals.std().clamp_min(1e-6)) if totals.numel() > 1 else 1.0


# ---------------------------------------------------------------------------------------------
# checkpoints and metrics


@dataclass
class LoopState:
    step: int = 0  # completed optimisation steps
    reward_mean: float | None = None  # the "initial" normaliser, fixed once measured
    reward_std: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    found = (run_dir / "checkpoints").glob("step_*")
    return sorted((p for p in found if (p / STATE_FILE).exists()), key=lambda p: int(p.name[5:]))


def save_checkpoint(
    run_dir: Path, policy, tokenizer, optimizer, state: LoopState, keep: int | None, scheduler=None
):
    """`checkpoints/step_<n>/`: the policy (with any heads), tokenizer, optimizer and RNG state."""

    folder = run_dir / "checkpoints" / f"step_{state.step}"
    save_policy(policy, folder)
    tokenizer.save_pretrained(folder)
    rng = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "state": state.__dict__,
            "rng": rng,
        },
        folder / STATE_FILE,
    )
    if keep is not None:
        for old in checkpoint_dirs(run_dir)[:-keep]:
            shutil.rmtree(old)
    return folder


def peft_model(policy):
    """The peft wrapper of a (possibly DDP-wrapped) LoRA policy, else None."""
    while hasattr(policy, "module"):
        policy = policy.module
    return policy if hasattr(policy, "peft_config") else None


def save_policy(policy, folder: Path) -> None:
    """A plain `save_pretrained` folder (plus heads), or a LoRA adapter folder (plus heads)."""
    from irlalign.modeling.heads import save_heads, save_pretrained_with_heads, split_head_state
    from irlalign.trainers.common import unwrap

    peft = peft_model(policy)
    if peft is None:
        save_pretrained_with_heads(unwrap(policy), folder)
        return
    peft.save_pretrained(folder)
    save_heads(unwrap(policy), folder, split_head_state(unwrap(policy).state_dict())[1])


def load_checkpoint(folder: Path, policy, optimizer, scheduler=None) -> LoopState:
    """Weights (and heads) into ``policy``, the optimizer state, RNG state; returns the state."""
    from safetensors.torch import load_file

    from irlalign.modeling.heads import load_heads
    from irlalign.trainers.common import unwrap

    base, peft = unwrap(policy), peft_model(policy)
    if peft is not None:  # a LoRA policy: the checkpoint holds the adapter
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(peft, load_file(str(folder / "adapter_model.safetensors")))
    else:
        base.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
    load_heads(base, folder)
    saved = torch.load(folder / STATE_FILE, weights_only=False)
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None and saved.get("scheduler") is not None:
        scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"]["torch"])
    np.random.set_state(saved["rng"]["numpy"])
    random.setstate(saved["rng"]["python"])
    return LoopState(**saved["state"])


def resume_folder(run_dir: Path, resume: bool | str | None) -> Path | None:
    if not resume:
        return None
    if isinstance(resume, str) and resume.lower() not in ("true", "latest"):
        return Path(resume)
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop metric lines logged after the checkpoint a run resumes from (they are redone)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= step]
    path.write_text("".join(ln + "\n" for ln in kept))


def evaluate_policy(task_dir: str | None, policy, tokenizer, samples: int, seed: int) -> dict:
    """Synthetic-task metrics of the in-memory policy ({} without a task)."""
    if not task_dir:
        return {}
    from irlalign.synthetic.runner import eval_policy_model
    from irlalign.trainers.common import unwrap

    model = unwrap(policy)
    was_training = model.training
    side = tokenizer.padding_side
    try:
        return eval_policy_model(task_dir, model.eval(), tokenizer, samples, seed)
    finally:
        model.train(was_training)
        tokenizer.padding_side = side
