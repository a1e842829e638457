"""One loop step's shared parts: rollouts of the current policy, reference log-probs, reward
standardisation, the optimizer step, logging / evaluation / checkpointing, and the final save."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import torch
from torch import Tensor

from irlalign.cards import publish
from irlalign.extract import token_pieces
from irlalign.generation.rewards import completion_ids
from irlalign.generation.sampling import HFSampler, Rollouts, SamplingConfig
from irlalign.guard import NonFiniteError
from irlalign.loops.checkpoint import atomic_folder, save_checkpoint, save_policy
from irlalign.loops.evaluation import CURVE_KEYS, evaluate
from irlalign.loops.setup import LoopContext, prompt_batch
from irlalign.losses.policy_gradient import standardise_rewards
from irlalign.modeling.forward import peft_wrapper, response_logps, unwrap
from irlalign.runs import RunFolder

# Completions written to samples.jsonl per logged step: enough to read, not a dump of the batch.
LOGGED_COMPLETIONS = 8


def sample(policy, tokenizer, sampling: SamplingConfig, prompts: list[str], k: int, seed: int):
    """Rollouts of the current policy (dropout off), seeded so a resumed step redraws them."""
    torch.manual_seed(seed)
    model = unwrap(policy)
    was_training = model.training
    try:
        return HFSampler(model.eval(), tokenizer, sampling).sample(prompts, k)
    finally:
        model.train(was_training)


def rollout(ctx: LoopContext, step: int) -> Rollouts:
    """This process's prompts of ``step`` and ``k`` samples each from the current policy."""
    rl, acc = ctx.method_config, ctx.accelerator
    prompts = prompt_batch(
        ctx.prompts, step, rl.prompts_per_step, ctx.args.seed, acc.process_index, acc.num_processes
    )
    try:
        return sample(ctx.policy, ctx.tokenizer, rl.sampling, prompts, rl.k, ctx.args.seed + step)
    except RuntimeError as err:  # torch.multinomial on NaN/inf probabilities
        if "inf" not in str(err) and "nan" not in str(err):
            raise
        raise NonFiniteError(
            f"step {step + 1}: non-finite next-token probabilities while sampling: an earlier "
            "update diverged; resume from an earlier checkpoint with a lower "
            "training.learning_rate"
        ) from None


@torch.no_grad()
def reference_pass(
    ref,
    rollouts: Rollouts,
    device,
    chunk_tokens: int | None,
    temperature: float = 1.0,
    rows: int | None = None,
) -> tuple[Tensor, Tensor]:
    """The reference's log-probs of the sampled responses at the sampling temperature (the KL
    penalty compares two distributions at the same temperature), and its final hidden states
    (B, L, d), from which the exact per-state KL recomputes the reference's logits (zero past
    each row's end). ``rows``: at most that many rows per forward, grouped by length and each
    group cut to its longest row, so short rows are not padded to the batch's longest; None:
    one forward."""
    lengths = rollouts.attention_mask.sum(1)
    logps = torch.zeros(rollouts.logps.shape, dtype=torch.float32, device=device)
    hidden = None
    for idx in length_groups(lengths, rows):
        width = int(lengths[idx].max())
        ids, am, cm = (
            t[idx, :width].to(device)
            for t in (rollouts.input_ids, rollouts.attention_mask, rollouts.completion_mask)
        )
        lp, h = response_logps(ref, ids, am, cm, chunk_tokens, temperature)
        if hidden is None:
            hidden = h.new_zeros((*rollouts.input_ids.shape, h.shape[-1]))
        rows_ = idx.to(device)
        logps[rows_, : width - 1] = lp.float()
        hidden[rows_, :width] = h
    return logps, hidden


def length_groups(lengths: Tensor, rows: int | None) -> list[Tensor]:
    """Row indices in groups of at most ``rows`` (None: one group, in order), shortest rows
    first when there is more than one group."""
    n = lengths.shape[0]
    if rows is None or rows >= n:
        return [torch.arange(n)]
    order = torch.argsort(lengths, stable=True)
    return list(order.split(rows))


def reference_logps(
    ref, rollouts: Rollouts, device, chunk_tokens: int | None, temperature: float = 1.0
) -> Tensor:
    """`reference_pass`'s log-probs only."""
    return reference_pass(ref, rollouts, device, chunk_tokens, temperature)[0]


def action_mask(rollouts: Rollouts) -> Tensor:
    return rollouts.completion_mask[:, 1:].bool()


def reward_stats(rewards: Tensor, mask: Tensor) -> tuple[float, float]:
    """Mean and std of per-sequence returns."""
    totals = torch.where(mask, rewards, torch.zeros_like(rewards)).sum(1)
    return float(totals.mean()), float(totals.std().clamp_min(1e-6)) if totals.numel() > 1 else 1.0


def rollout_metrics(
    raw: Tensor, shaped: Tensor, kl: Tensor, mask: Tensor, rollouts: Rollouts
) -> dict[str, float]:
    """What both loops log about a batch: raw reward, shaped return, KL, length, EOS rate."""
    returns = (raw * mask).sum(1)
    return {
        "rl/reward": float(returns.mean()),
        "rl/reward_std": float(returns.std()),
        "rl/return": float(shaped.sum(1).mean()),
        "policy/kl": float(kl.mean()),
        "rl/length": float(mask.sum(1).float().mean()),
        "rl/finished": float(rollouts.finished.float().mean()),
    }


def normalise(ctx: LoopContext, rewards: Tensor, mask: Tensor) -> Tensor:
    """The configured reward standardisation (`reward_norm`)."""
    how = ctx.method_config.reward_norm
    if how == "none":
        return rewards
    mean, std = reward_stats(rewards, mask)
    if how == "initial":
        if ctx.state.reward_mean is None:  # measured once, on the initial policy's first batch
            ctx.state.reward_mean, ctx.state.reward_std = mean, std
        mean, std = ctx.state.reward_mean, ctx.state.reward_std
    return standardise_rewards(rewards, mask, mean=mean, std=std)


def optimizer_step(ctx: LoopContext) -> float:
    """Clip, step, zero (the loops step the schedule once per iteration); returns the
    pre-clip gradient norm."""
    norm = float(ctx.accelerator.clip_grad_norm_(ctx.policy.parameters(), ctx.args.max_grad_norm))
    if ctx.guard.allows(norm, ctx.state.step + 1):  # raises when the run must stop
        ctx.optimizer.step()
    ctx.optimizer.zero_grad(set_to_none=True)
    return norm


def end_step(
    ctx: LoopContext,
    metrics: dict[str, float],
    samples: tuple[Rollouts, Tensor] | None = None,
) -> None:
    """Log (every `logging_steps`), evaluate (every `eval_steps`), write completions (``samples``:
    the step's rollouts and raw rewards, every `log_completions_steps`) and checkpoint
    (`save_steps`)."""
    step, args = ctx.state.step, ctx.args
    if samples is not None:
        log_completions(ctx, *samples)
    if args.eval_steps and step % args.eval_steps == 0:
        before = time.process_time()
        metrics.update(eval_metrics(ctx))
        ctx.eval_cpu += time.process_time() - before
    if step % args.logging_steps == 0 or "eval/normalised_score" in metrics:
        train_cpu = time.process_time() - ctx.started_cpu - ctx.eval_cpu
        metrics = {
            "step": step,
            "time/elapsed_s": time.time() - ctx.started,
            "time/train_cpu_s": train_cpu,  # this process's CPU time, evaluations excluded
            **metrics,
        }
        if ctx.accelerator.is_main_process:
            RunFolder(ctx.run_dir).log_metrics(metrics)
            if not args.disable_tqdm:
                print(f"step {step}/{args.max_steps}", console_line(metrics), flush=True)
        ctx.accelerator.log(metrics, step=step)
    if step % args.save_steps == 0 and ctx.accelerator.is_main_process:
        save_checkpoint(
            ctx.run_dir,
            ctx.policy,
            ctx.tokenizer,
            ctx.optimizer,
            ctx.state,
            args.save_total_limit,
            ctx.scheduler,
        )


def log_completions(ctx: LoopContext, rollouts: Rollouts, raw: Tensor) -> None:
    """Append the first completions of the step to `samples.jsonl`: prompt, completion, reward
    (the sequence total) and, for dense rewards, each token's reward next to the token's own
    text (decoded one id at a time, so byte-level pieces read as text)."""
    every, step = ctx.args.log_completions_steps, ctx.state.step
    if every <= 0 or (step % every and step != 1) or not ctx.accelerator.is_main_process:
        return
    dense = ctx.method_config.reward_mode == "dense"
    raw, rows = raw.detach().float().cpu(), []
    for b in range(min(LOGGED_COMPLETIONS, raw.shape[0])):
        positions = rollouts.completion_mask[b].bool().nonzero().squeeze(1) - 1
        rewards = raw[b, positions].tolist() if positions.numel() else []
        row = {
            "step": step,
            "prompt": rollouts.prompts[b],
            "completion": rollouts.responses[b],
            "reward": float(sum(rewards)),
        }
        if dense:
            row["tokens"] = token_pieces(ctx.tokenizer, completion_ids(rollouts, b))
            row["token_rewards"] = rewards
        rows.append(row)
    with open(ctx.run_dir / "samples.jsonl", "a") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def console_line(metrics: dict[str, Any]) -> str:
    """The float metrics with 4 significant digits (a learning rate of 1e-6 stays readable,
    where rounding to decimals would print 0.0)."""
    return " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))


def eval_metrics(ctx: LoopContext) -> dict[str, float]:
    if not ctx.task_dir or not ctx.accelerator.is_main_process:
        return {}
    res = evaluate(ctx)
    return {f"eval/{k}": float(res[k]) for k in CURVE_KEYS}


def finish(ctx: LoopContext, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """`checkpoints/final` (for LoRA the adapter, plus a merged `final_merged`), the final
    synthetic evaluation and `eval.json`."""
    ctx.accelerator.wait_for_everyone()
    results: dict[str, Any] = dict(extra or {})
    if ctx.accelerator.is_main_process:
        final = ctx.run_dir / "checkpoints" / "final"
        with atomic_folder(final) as tmp:
            save_policy(ctx.policy, tmp)
            ctx.tokenizer.save_pretrained(tmp)
        results["final_checkpoint"] = str(final)
        peft = peft_wrapper(ctx.policy)
        if peft is not None:
            from irlalign.modeling.heads import save_pretrained_with_heads

            merged = ctx.run_dir / "checkpoints" / "final_merged"
            save_pretrained_with_heads(copy.deepcopy(peft).merge_and_unload(), merged)
            ctx.tokenizer.save_pretrained(merged)
            results["merged_checkpoint"] = str(merged)
        results["steps"] = ctx.state.step
        if ctx.task_dir:
            results["synthetic"] = {"policy": str(final), **evaluate(ctx)}
    ctx.accelerator.end_training()
    if ctx.accelerator.is_main_process:  # the model card, eval.json, then the upload if asked
        publish(ctx.cfg, results, ("policy",), RunFolder(ctx.run_dir).write_eval)
    return results
