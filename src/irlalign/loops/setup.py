"""What every online loop sets up: its `training` section (`LoopArgs`), accelerate, the policy
and its frozen reference, optimizer and schedule, the reward model, the prompts, and a resume
from the newest checkpoint. The result is one `LoopContext` the loops read by name."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from irlalign.cards import check_push
from irlalign.config import RunConfig
from irlalign.generation.sampling import SamplingConfig
from irlalign.guard import FiniteGuard
from irlalign.loops.checkpoint import LoopState, load_checkpoint, resume_folder
from irlalign.loops.evaluation import START_KEY, evaluate
from irlalign.modeling.reward import RewardModel

# `transformers.get_scheduler` names that need nothing beyond warm-up and total steps.
SCHEDULES = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "warmup_stable_decay",  # needs lr_scheduler_kwargs: {num_decay_steps: N}
)
GOLD = "gold"  # reward_model value: the synthetic task's true reward r* (needs eval.synthetic_task)


@dataclass
class LoopArgs:
    """The `training` section of an online method (the loops do not use `TrainingArguments`)."""

    output_dir: str
    max_steps: int = 100
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # Steps with a NaN/inf gradient norm that may be skipped (gradients dropped, weights kept)
    # before the run stops with an error; 0: stop at the first, before the weights change.
    skip_nonfinite_steps: int = 0
    warmup_steps: int = 0
    lr_scheduler_type: str = "linear"  # one of SCHEDULES (transformers' names)
    # Passed to the schedule as transformers' `scheduler_specific_kwargs`, e.g.
    # {num_decay_steps: 100, decay_type: linear} for warmup_stable_decay.
    lr_scheduler_kwargs: dict = field(default_factory=dict)
    seed: int = 42
    logging_steps: int = 1
    save_steps: int = 50
    save_total_limit: int | None = 2
    eval_steps: int | None = None  # synthetic evaluation every N steps (None: at the end only)
    # Every N steps (and at the first), a few of the step's completions with their rewards are
    # appended to `samples.jsonl` (per-token rewards for dense rewards); 0: never.
    log_completions_steps: int = 50
    use_cpu: bool = False
    bf16: bool = False
    # true: the newest complete `step_<n>` of this run; or a checkpoint folder's path.
    resume_from_checkpoint: bool | str | None = None
    # Empty a folder that holds another run before starting (without it, such a folder is
    # refused unless the run resumes it).
    overwrite_output_dir: bool = False
    # "tensorboard" (event files in <run>/tb/), "wandb" (local files in <run>/wandb/), ...
    report_to: str | list[str] = "none"
    disable_tqdm: bool = False
    # Upload checkpoints/final, with its model card (README.md), to the Hub repository
    # `hub_model_id` when the run is done.
    push_to_hub: bool = False
    hub_model_id: str | None = None  # e.g. "your-name/my-model"; required with push_to_hub
    hub_private_repo: bool | None = None  # create the repository private

    def __post_init__(self) -> None:
        check_push(self.push_to_hub, self.hub_model_id)
        if self.max_steps < 1 or self.save_steps < 1 or self.logging_steps < 1:
            raise ValueError("max_steps, save_steps and logging_steps must be >= 1")
        if self.skip_nonfinite_steps < 0:
            raise ValueError("skip_nonfinite_steps must be >= 0")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise ValueError("eval_steps must be >= 1 or null")
        if self.lr_scheduler_type not in SCHEDULES:
            raise ValueError(f"lr_scheduler_type must be one of {', '.join(SCHEDULES)}")
        if self.lr_scheduler_type == "warmup_stable_decay" and (
            "num_decay_steps" not in self.lr_scheduler_kwargs
        ):
            raise ValueError("warmup_stable_decay needs lr_scheduler_kwargs.num_decay_steps")
        if self.lr_scheduler_type == "warmup_stable_decay" and (
            self.warmup_steps + int(self.lr_scheduler_kwargs["num_decay_steps"]) > self.max_steps
        ):
            raise ValueError(
                "warmup_stable_decay: warmup_steps + lr_scheduler_kwargs.num_decay_steps must "
                f"not exceed max_steps ({self.max_steps})"
            )


@dataclass
class RLConfig:
    """The `method` fields RLOO and PPO share: the reward, the KL penalty and sampling."""

    # a reward-model folder, `gail:<folder>`, `implicit:<checkpoint>[,<reference>]`,
    # `log_ratio:<policy>,<reference>`, or "gold" (the synthetic task's r*)
    reward_model: str = GOLD
    reward_mode: str = "dense"  # "dense" per-token rewards, or "terminal" sequence scores
    reward_norm: str = "none"  # "none", "batch", "initial"
    kl_coef: float = 0.05  # β: per-token penalty β·(log π − log π_ref)
    chunk_tokens: int | None = None  # rows per vocabulary chunk; None: sized by the vocabulary
    sampling: Any = field(default_factory=SamplingConfig)  # temperature, length, stop strings

    def __post_init__(self) -> None:
        self.sampling = SamplingConfig.coerce(self.sampling)
        if self.reward_mode not in ("dense", "terminal"):
            raise ValueError("reward_mode must be 'dense' or 'terminal'")
        if self.reward_norm not in ("none", "batch", "initial"):
            raise ValueError("reward_norm must be 'none', 'batch' or 'initial'")
        if self.kl_coef < 0:
            raise ValueError("kl_coef must be >= 0")
        if not self.reward_model:
            raise ValueError(
                "reward_model is required: a reward-model folder, gail:, implicit:, log_ratio: "
                "or 'gold'"
            )
        if self.sampling.filters:
            raise ValueError(
                "sampling.top_k / sampling.top_p: an RL loop trains the policy it samples from, "
                "and filtered samples would make the update off-policy; use top_k: 0 and "
                "top_p: 1.0 (sampling.temperature is supported: the loss then uses "
                "softmax(logits / T))"
            )


@dataclass
class LoopContext:
    """Everything a loop step reads; `state` is what a checkpoint carries across a resume."""

    cfg: RunConfig
    args: LoopArgs
    accelerator: Any
    policy: torch.nn.Module
    ref: torch.nn.Module
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    reward_model: RewardModel
    prompts: list[str]
    state: LoopState
    started: float = field(default_factory=time.time)
    started_cpu: float = field(default_factory=time.process_time)
    eval_cpu: float = 0.0  # CPU seconds spent evaluating, left out of `time/train_cpu_s`
    guard: FiniteGuard = field(default_factory=FiniteGuard)

    @property
    def method_config(self) -> Any:
        return self.cfg.method_config

    @property
    def run_dir(self) -> Path:
        return self.cfg.run_dir

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def task_dir(self) -> str | None:
        return self.cfg.eval.synthetic_task


def load_prompts(
    source: str,
    split: str,
    tokenizer,
    max_rows: int | None = None,
    reward_model: str | None = None,
) -> list[str]:
    """Prompt strings of any supported dataset (validated first); chat prompts are rendered with
    the tokenizer's template and its generation prompt, as training data would be. With
    ``reward_model``, warns when that model was trained on plain text and these are chats."""
    from irlalign.data.formats import check_dataset
    from irlalign.data.loading import load_rows

    rows = load_rows(source, split)
    if max_rows is not None:
        rows = rows.select(range(min(max_rows, len(rows))))
    fmt = check_dataset(rows, f"{source} [{split}]").fmt
    if reward_model and fmt.conversational and getattr(tokenizer, "chat_template", None):
        warn_plain_reward_model(reward_model, f"{source} [{split}]")
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


def warn_plain_reward_model(reward_model: str, source: str) -> None:
    """One warning when the reward model's run recorded plain-text training rows: it never saw
    the chat template the policy's prompts and samples are rendered with. Silent when the
    reward model's folder records no data format (not an irlalign run, or an older one)."""
    import warnings

    from irlalign.cards import recorded_data_format
    from irlalign.data.formats import DataWarning
    from irlalign.modeling.gail_reward import PREFIX

    folder = reward_model.removeprefix(PREFIX)
    recorded = recorded_data_format(folder)
    if recorded is None or recorded.get("conversational"):
        return
    warnings.warn(
        f"method.reward_model: {folder} was trained on plain-text rows, but the prompts of "
        f"{source} are conversations rendered with the policy's chat template; its scores of "
        "chat-formatted text may mean little",
        DataWarning,
        stacklevel=3,
    )


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


def load_reward(spec: str, task_dir: str | None, tokenizer) -> RewardModel:
    """A `reward_model` value: `gold` (the synthetic r*), or any string `load_reward_spec` reads
    (a folder, `gail:<folder>`, `implicit:<ckpt>[,<reference>]`, `log_ratio:<policy>,<ref>`)."""
    from irlalign.modeling.reward_specs import load_reward_spec

    if spec == GOLD:
        if not task_dir:
            raise ValueError("reward_model 'gold' needs eval.synthetic_task (the task folder)")
        from irlalign.synthetic.build import load_task
        from irlalign.synthetic.gold import GoldReward

        return GoldReward(load_task(task_dir), tokenizer)
    return load_reward_spec(spec)


def _accelerator(cfg: RunConfig, args: LoopArgs):
    """The accelerator, and the `init_kwargs` of its trackers (None: no tracker)."""
    from accelerate import Accelerator

    from irlalign.trackers import loop_trackers

    log_with, init_kwargs = loop_trackers(args.report_to, cfg.run_dir)
    acc = Accelerator(
        cpu=args.use_cpu,
        mixed_precision="bf16" if args.bf16 else "no",
        log_with=log_with or None,
        project_dir=str(cfg.run_dir),
    )
    return acc, (init_kwargs if log_with else None)


def setup(cfg: RunConfig, prepare_model: Callable[[torch.nn.Module], None] | None = None):
    """Load everything a loop needs; ``prepare_model`` may attach heads (PPO's value head)
    before the optimizer sees the parameters. Resumes when `resume_from_checkpoint` says so."""
    from transformers import get_scheduler, set_seed

    from irlalign.modeling.forward import unwrap
    from irlalign.modeling.load import frozen_copy, load_model, load_tokenizer
    from irlalign.runs import RunFolder, truncate_metrics

    args = LoopArgs(**cfg.training)
    acc, report = _accelerator(cfg, args)
    set_seed(args.seed)
    tokenizer = load_tokenizer(cfg.model.path, cfg.model.trust_remote_code)
    policy = load_model(cfg.model)
    if prepare_model is not None:
        prepare_model(policy)
    ref = load_model(cfg.reference) if cfg.reference else frozen_copy(unwrap(policy))
    ref.to(acc.device).eval().requires_grad_(False)
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    sched = get_scheduler(
        args.lr_scheduler_type,
        opt,
        args.warmup_steps,
        args.max_steps,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )
    rm = load_reward(cfg.method_config.reward_model, cfg.eval.synthetic_task, tokenizer)
    rm_spec = cfg.method_config.reward_model
    prompts = load_prompts(cfg.data.train, cfg.data.split, tokenizer, cfg.data.max_rows, rm_spec)
    state = LoopState()
    folder = resume_folder(cfg.run_dir, args.resume_from_checkpoint)
    if folder is not None:
        state = load_checkpoint(folder, policy, opt, sched)
        print(f"resumed from {folder} at step {state.step}")
    if acc.is_main_process:  # the config, data and checkpoint passed validation
        run = RunFolder(cfg.run_dir)
        run.write_config(cfg.to_dict())
        run.write_env(args.seed)
        # Lines after the resumed step are logged again; a run that starts over logs them all.
        truncate_metrics(cfg.run_dir, state.step if folder is not None else -1)
    policy, opt = acc.prepare(policy, opt)
    if report is not None:
        acc.init_trackers("irlalign", config={"method": cfg.method_name}, init_kwargs=report)
    ctx = LoopContext(cfg, args, acc, policy, ref, tokenizer, opt, sched, rm, prompts, state)
    ctx.guard = FiniteGuard(args.skip_nonfinite_steps, f" under {cfg.run_dir / 'checkpoints'}")
    if ctx.task_dir and acc.is_main_process and START_KEY not in state.extra:
        evaluate(ctx)  # J(π₀), the start of every gap_closed
        ctx.started_cpu = time.process_time()
    return ctx
