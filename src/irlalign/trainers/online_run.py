"""What every online loop sets up and tears down: accelerate, policy and frozen reference,
optimizer and schedule, reward model, prompts, resume, per-step logging, checkpoints, curves."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from irlalign.losses.policy_gradient import standardise_rewards
from irlalign.trainers import online


@dataclass
class OnlineSetup:
    cfg: Any  # irlalign.training.RunConfig
    args: online.LoopArgs
    accelerator: Any
    policy: torch.nn.Module
    ref: torch.nn.Module
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    reward_model: Any
    prompts: list[str]
    state: online.LoopState
    run_dir: Path
    started: float = field(default_factory=time.time)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def task_dir(self) -> str | None:
        return self.cfg.eval.synthetic_task


def setup(cfg, prepare_model: Callable[[torch.nn.Module], None] | None = None) -> OnlineSetup:
    """Load everything a loop needs; ``prepare_model`` may attach heads (PPO's value head)
    before the optimizer sees the parameters. Resumes when `resume_from_checkpoint` says so."""
    from accelerate import Accelerator
    from transformers import get_scheduler, set_seed

    from irlalign.modeling.load import frozen_copy, load_model, load_tokenizer
    from irlalign.runs import RunFolder
    from irlalign.trainers.common import unwrap

    args = online.LoopArgs(**cfg.training)
    report = [] if args.report_to in ("none", None, []) else args.report_to
    acc = Accelerator(
        cpu=args.use_cpu,
        mixed_precision="bf16" if args.bf16 else "no",
        log_with=report or None,
        project_dir=str(cfg.run_dir),
    )
    set_seed(args.seed)
    run = RunFolder(cfg.run_dir)
    if acc.is_main_process:
        run.write_config(cfg.to_dict())
        run.write_env(args.seed)
    tokenizer = load_tokenizer(cfg.model.path, cfg.model.trust_remote_code)
    policy = load_model(cfg.model)
    if prepare_model is not None:
        prepare_model(policy)
    ref = load_model(cfg.reference) if cfg.reference else frozen_copy(unwrap(policy))
    ref.to(acc.device).eval().requires_grad_(False)
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    sched = get_scheduler("linear", opt, args.warmup_steps, args.max_steps)
    m = cfg.method_config
    rm = online.load_reward(m.reward_model, cfg.eval.synthetic_task, tokenizer)
    prompts = online.load_prompts(cfg.data.train, cfg.data.split, tokenizer, cfg.data.max_rows)
    state = online.LoopState()
    folder = online.resume_folder(cfg.run_dir, args.resume_from_checkpoint)
    if folder is not None:
        state = online.load_checkpoint(folder, policy, opt, sched)
        online.truncate_metrics(cfg.run_dir, state.step)
        print(f"resumed from {folder} at step {state.step}")
    policy, opt = acc.prepare(policy, opt)
    if report:
        acc.init_trackers("irlalign", config={"method": cfg.method})
    return OnlineSetup(
        cfg, args, acc, policy, ref, tokenizer, opt, sched, rm, prompts, state, cfg.run_dir
    )


def rollout(o: OnlineSetup, step: int):
    """This process's prompts of ``step`` and ``k`` samples each from the current policy."""
    m, acc = o.cfg.method_config, o.accelerator
    prompts = online.prompt_batch(
        o.prompts, step, m.prompts_per_step, o.args.seed, acc.process_index, acc.num_processes
    )
    return online.sample(o.policy, o.tokenizer, m.sampling, prompts, m.k, o.args.seed + step)


def rollout_metrics(raw: Tensor, shaped: Tensor, kl: Tensor, mask: Tensor, ro) -> dict[str, float]:
    """What both loops log about a batch: raw reward, shaped return, KL, length, EOS rate."""
    returns = (raw * mask).sum(1)
    return {
        "rl/reward": float(returns.mean()),
        "rl/reward_std": float(returns.std()),
        "rl/return": float(shaped.sum(1).mean()),
        "policy/kl": float(kl.mean()),
        "rl/length": float(mask.sum(1).float().mean()),
        "rl/finished": float(ro.finished.float().mean()),
    }


def normalise(o: OnlineSetup, rewards: Tensor, mask: Tensor) -> Tensor:
    """The configured reward standardisation (`reward_norm`)."""
    how = o.cfg.method_config.reward_norm
    if how == "none":
        return rewards
    mean, std = online.reward_stats(rewards, mask)
    if how == "initial":
        if o.state.reward_mean is None:  # measured once, on the initial policy's first batch
            o.state.reward_mean, o.state.reward_std = mean, std
        mean, std = o.state.reward_mean, o.state.reward_std
    return standardise_rewards(rewards, mask, mean=mean, std=std)


def optimizer_step(o: OnlineSetup) -> float:
    """Clip, step, zero (the loops step the schedule once per iteration); returns the
    pre-clip gradient norm."""
    norm = o.accelerator.clip_grad_norm_(o.policy.parameters(), o.args.max_grad_norm)
    o.optimizer.step()
    o.optimizer.zero_grad(set_to_none=True)
    return float(norm)


def end_step(o: OnlineSetup, metrics: dict[str, float]) -> None:
    """Log (every `logging_steps`), evaluate (every `eval_steps`) and checkpoint (`save_steps`)."""
    step, args = o.state.step, o.args
    if args.eval_steps and step % args.eval_steps == 0:
        metrics.update(eval_metrics(o))
    if step % args.logging_steps == 0 or "eval/normalised_score" in metrics:
        metrics = {"step": step, "time/elapsed_s": time.time() - o.started, **metrics}
        if o.accelerator.is_main_process:
            from irlalign.runs import RunFolder

            RunFolder(o.run_dir).log_metrics(metrics)
            if not args.disable_tqdm:
                shown = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}
                print(f"step {step}/{args.max_steps}", shown, flush=True)
        o.accelerator.log(metrics, step=step)
    if step % args.save_steps == 0 and o.accelerator.is_main_process:
        online.save_checkpoint(
            o.run_dir,
            o.policy,
            o.tokenizer,
            o.optimizer,
            o.state,
            args.save_total_limit,
            o.scheduler,
        )


def eval_metrics(o: OnlineSetup) -> dict[str, float]:
    ev = o.cfg.eval
    if not o.task_dir or not o.accelerator.is_main_process:
        return {}
    res = online.evaluate_policy(o.task_dir, o.policy, o.tokenizer, ev.samples, ev.seed)
    keys = ("gold_return", "normalised_score", "kl_ref", "kl_expert", "self_bleu", "distinct_2")
    return {f"eval/{k}": float(res[k]) for k in keys}


def finish(o: OnlineSetup, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """`checkpoints/final`, the final synthetic evaluation and `eval.json`."""
    from irlalign.modeling.heads import save_pretrained_with_heads
    from irlalign.runs import RunFolder

    o.accelerator.wait_for_everyone()
    results: dict[str, Any] = dict(extra or {})
    if o.accelerator.is_main_process:
        final = o.run_dir / "checkpoints" / "final"
        online.save_policy(o.policy, final)
        o.tokenizer.save_pretrained(final)
        results["final_checkpoint"] = str(final)
        peft = online.peft_model(o.policy)
        if peft is not None:  # `final` is the adapter; `final_merged` a plain checkpoint
            import copy

            merged = o.run_dir / "checkpoints" / "final_merged"
            save_pretrained_with_heads(copy.deepcopy(peft).merge_and_unload(), merged)
            o.tokenizer.save_pretrained(merged)
            results["merged_checkpoint"] = str(merged)
        results["steps"] = o.state.step
        if o.task_dir:
            ev = o.cfg.eval
            res = online.evaluate_policy(o.task_dir, o.policy, o.tokenizer, ev.samples, ev.seed)
            results["synthetic"] = {"policy": str(final), **res}
        RunFolder(o.run_dir).write_eval(results)
    o.accelerator.end_training()
    return results
