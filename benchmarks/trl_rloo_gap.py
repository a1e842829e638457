"""How far TRL's `RLOOTrainer` gets towards the KL-regularised optimum of the synthetic task.

The counterpart of `benchmarks/rl_to_optimum.py` (our RLOO loop) for TRL: the same task, the same
number of samples per update and the same evaluation, so that TRL's `gap_closed` curve can be put
next to ours. The objective is J(π) = E[R] − β·KL(π‖π_ref) with the task's β (= 1) and
gap_closed = (J(π) − J(π₀)) / (J* − J(π₀)), where J(π₀) is the evaluation of π_init at step 0.

    python benchmarks/trl_rloo_gap.py [--task runs/quickstart/task] [--seeds 0 1 2]
        [--steps 300] [--eval-steps 50]

Each seed runs in its own subprocess on one torch thread (OMP/MKL_NUM_THREADS=1). The table
reports gap_closed and the normalised score (mean ± standard error over seeds) at step 0 (π_init)
and every `--eval-steps` steps, the samples drawn so far (step × 256) and the training CPU time
of the first seed; then, per seed, the largest gap_closed and whether 0.9 was reached.

Evaluation: `irlalign.loops.evaluation.evaluate_policy(task, model, tokenizer, samples, seed)` on
the in-memory TRL policy, with `EvalOptions`' default samples (4 per held-out prompt) and seed (0),
exactly what our loops run every `eval_steps`; gap_closed is `irlalign.synthetic.evaluate.
gap_closed` against this run's own step-0 evaluation, as in our loops. It runs from a
`TrainerCallback` (π_init in `on_train_begin`, then `on_step_end` every `--eval-steps` steps and
at the last step) inside `torch.random.fork_rng()`: the evaluation seeds the global torch RNG, and
without the fork it would reset TRL's sampling stream to the same state in every run. Training
CPU time is this process's `time.process_time()` from the end of the π_init evaluation (models
loaded, optimizer built), with the CPU time of the evaluations subtracted, like our loops'
`time/train_cpu_s`.

TRL settings (those of our shipped RLOO preset, `presets/synthetic/rloo.yaml`, where TRL has
them): policy and reference = `<task>/pi_init` in fp32 (`bf16=False`), no gradient checkpointing;
prompts = the unique prompts of `<task>/demos` (train split), shuffled by TRL; 32 prompts ×
`num_generations` 8 = 256 completions per optimizer step (`per_device_train_batch_size` 256,
`gradient_accumulation_steps` 1, so `steps_per_generation` 1 and `generation_batch_size` 256),
`num_iterations` 1 (each generation batch serves exactly one update); `max_completion_length` 24
(the task horizon), temperature 1, top-p 1, top-k 0; `beta` 1.0 (= our `kl_coef` = the task β);
`normalize_advantages=False` (also TRL's default), no reward clipping or scaling; AdamW
(`optim="adamw_torch"`) lr 2e-3, weight decay 0, `lr_scheduler_type="constant_with_warmup"` with
`warmup_steps` 5, `max_grad_norm` 1.0; `seed` = the run's seed. Reward = the synthetic gold
reward's sequence score `GoldReward.score(prompts, completions)` on TRL's decoded completions
(special tokens skipped; a completion shorter than the horizon is scored as ended by EOS, one of
24 tokens as cut off at the horizon).

What TRL (checked for 1.16) does with `beta`: it is a sequence-level penalty in the reward, not a
loss term. After generation it computes, without gradients, the per-token log-probs of the policy
(a second forward) and of the reference, takes the first-order estimate log π − log π_ref per
token, sums it over the completion and sets reward = score − β·Σ_t(log π − log π_ref). The
advantage of each completion is its reward minus the mean reward of the other 7 completions of
its prompt (leave-one-out). The loss is the clipped ratio surrogate
−mean_i min(ρ_i A_i, clip(ρ_i, 1 ± 0.2) A_i) with ρ_i = exp(Σ_t log π − Σ_t old log π) over the
whole completion; with one update per generation batch ρ ≡ 1 (up to float noise), so the
gradient is −mean_i A_i ∇Σ_t log π, the same scale as our `rloo_loss` (sum over tokens, mean over
rows). Both TRL and our loop penalise the KL to π_init (the checkpoint); the evaluation's KL is to
the task's tabular π_ref, the same for both.

What differs from our preset:

- Advantages. Our preset uses dense per-token rewards r*_t − β(log π − log π_ref)_t and per-token
  reward-to-go advantages (`advantage: reward_to_go`: each token is credited only with the
  rewards at and after it, leave-one-out baseline position by position). TRL can only take one
  score per completion; the score is the same total reward Σ_t r*_t and the KL term the same
  total, but every token of a completion gets the same sequence advantage — TRL's update is that
  of our `advantage: sequence` setting (the RLOO paper's Eq. 5), not of the shipped preset.
- Sampling: TRL's `RepeatSampler` repeats each prompt 8 times and shuffles the prompt pool per
  epoch with its own seed; our loop draws 32 prompts per step by a seeded shuffle and samples
  with a per-step seed. TRL computes the KL term from a recomputed forward, ours from the
  generation-time log-probs (the same values up to float noise).
- CPU time: TRL's step includes the Trainer's overhead (dataloader, metric gathering and
  `.item()` syncs, entropy of the training forward); it is reported for reference, the
  sample-matched comparison is the gap_closed column.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rloo_vs_trl import ensure_task, prompt_pool  # benchmarks/ is on sys.path when run

PROMPTS_PER_STEP = 32
NUM_GENERATIONS = 8  # TRL's k
SAMPLES_PER_STEP = PROMPTS_PER_STEP * NUM_GENERATIONS
TARGET = 0.9  # the gap_closed level reported per seed


def trl_config(out: str, seed: int, steps: int, logging_steps: int):
    """TRL's `RLOOConfig` with the settings of our RLOO preset (see the module docstring)."""
    from trl import RLOOConfig

    return RLOOConfig(
        output_dir=out,
        per_device_train_batch_size=SAMPLES_PER_STEP,  # completions per optimizer step
        gradient_accumulation_steps=1,
        num_generations=NUM_GENERATIONS,
        num_iterations=1,
        max_completion_length=24,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=1.0,
        normalize_advantages=False,
        learning_rate=2e-3,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=5,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        max_steps=steps,
        logging_steps=logging_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        seed=seed,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def gold_reward_fn(task: Path, tokenizer):
    """A TRL reward function: the synthetic gold reward's sequence score of each completion."""
    from irlalign.synthetic.build import load_task
    from irlalign.synthetic.gold import GoldReward

    gold = GoldReward(load_task(task), tokenizer)

    def gold_reward(prompts, completions, **kwargs) -> list[float]:
        return [float(x) for x in gold.score(prompts, completions)]

    return gold_reward


def gap_callback(task: Path, tokenizer, every: int):
    """A `TrainerCallback` that evaluates the policy at step 0 and every `every` steps."""
    import torch
    from transformers import TrainerCallback

    from irlalign.config import EvalOptions
    from irlalign.loops.evaluation import evaluate_policy
    from irlalign.synthetic.evaluate import gap_closed

    defaults = EvalOptions()

    class GapCurve(TrainerCallback):
        def __init__(self):
            self.curve: list[dict] = []
            self.start = math.nan  # J(π₀)
            self.cpu0 = 0.0  # process CPU time when training starts
            self.eval_cpu = 0.0  # CPU time of the evaluations after that

        def evaluate(self, model, step: int) -> None:
            before = time.process_time()
            with torch.random.fork_rng(devices=[]):  # leave TRL's sampling stream alone
                res = evaluate_policy(str(task), model, tokenizer, defaults.samples, defaults.seed)
            if not self.curve:
                self.start = res["objective"]
            else:
                self.eval_cpu += time.process_time() - before
            self.curve.append(
                {
                    "step": step,
                    "samples": step * SAMPLES_PER_STEP,
                    "cpu_s": time.process_time() - self.cpu0 - self.eval_cpu if step else 0.0,
                    "gap_closed": gap_closed(
                        res["objective"], self.start, res["optimal_objective"]
                    ),
                    "score": res["normalised_score"],
                    "objective": res["objective"],
                    "optimal_objective": res["optimal_objective"],
                    "kl_ref": res["kl_ref"],
                }
            )

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.evaluate(model, 0)
            self.cpu0, self.eval_cpu = time.process_time(), 0.0

        def on_step_end(self, args, state, control, model=None, **kwargs):
            step = state.global_step
            if step % every == 0 or step == state.max_steps:
                self.evaluate(model, step)

    return GapCurve()


def run_seed(task: Path, seed: int, steps: int, every: int) -> list[dict]:
    """One TRL run; its evaluation curve."""
    import torch
    from datasets import Dataset
    from trl import RLOOTrainer

    from irlalign.modeling.load import load_tokenizer

    torch.set_num_threads(1)
    path = str(task / "pi_init")
    tokenizer = load_tokenizer(path)
    out = tempfile.mkdtemp(prefix=f"trl_rloo_gap_{seed}_")
    args = trl_config(out, seed, steps, logging_steps=every)
    assert args.steps_per_generation == 1 and args.generation_batch_size == SAMPLES_PER_STEP
    curve = gap_callback(task, tokenizer, every)
    trainer = RLOOTrainer(
        model=path,
        reward_funcs=gold_reward_fn(task, tokenizer),
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompt_pool(task, tokenizer)}),
        processing_class=tokenizer,
        callbacks=[curve],
    )
    assert next(trainer.model.parameters()).dtype == torch.float32
    trainer.train()
    shutil.rmtree(out, ignore_errors=True)
    logged = {h["step"]: h for h in trainer.state.log_history if "reward" in h}
    # TRL's own training metrics, means over the logging window ending at the evaluation: the
    # raw score of the training samples (KL not subtracted) and the per-token log π − log π_ref.
    for point in curve.curve:
        h = logged.get(point["step"], {})
        point["trl_reward"], point["trl_kl"] = h.get("reward"), h.get("kl")
    return curve.curve


def spawn(task: Path, seed: int, steps: int, every: int) -> list[dict]:
    """`run_seed` in a fresh one-thread subprocess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    cmd = [sys.executable, __file__, "--task", str(task), "--steps", str(steps)]
    cmd += ["--eval-steps", str(every), "--child-seed", str(seed)]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    line = [x for x in done.stdout.splitlines() if x.startswith("CURVE ")]
    if done.returncode or not line:
        sys.exit(f"seed {seed} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    print(f"  seed {seed}: {time.perf_counter() - t:.0f} s wall", file=sys.stderr, flush=True)
    return json.loads(line[-1][len("CURVE ") :])


def mean_se(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {statistics.stdev(values) / math.sqrt(len(values)):.3f}"


def report(curves: dict[int, list[dict]], steps: int) -> None:
    import trl

    seeds = list(curves)
    first = curves[seeds[0]]
    print(
        f"\nTRL {trl.__version__} RLOOTrainer: {PROMPTS_PER_STEP} prompts × {NUM_GENERATIONS} "
        f"= {SAMPLES_PER_STEP} completions/step, beta 1, lr 2e-3 constant_with_warmup (5), "
        f"{steps} steps; seeds {seeds}; mean ± se over seeds\n"
    )
    print(f"| step | samples | train CPU s (seed {seeds[0]}) | gap_closed | normalised score |")
    print("|---:|---:|---:|---:|---:|")
    for i, point in enumerate(first):
        gaps = [c[i]["gap_closed"] for c in curves.values()]
        scores = [c[i]["score"] for c in curves.values()]
        print(
            f"| {point['step']} | {point['samples']} | {point['cpu_s']:.0f} | "
            f"{mean_se(gaps)} | {mean_se(scores)} |"
        )
    print()
    for seed, curve in curves.items():
        best = max(curve, key=lambda p: p["gap_closed"])
        hit = next((p for p in curve if p["gap_closed"] >= TARGET), None)
        reach = (
            f"reached {TARGET} at step {hit['step']} ({hit['samples']} samples, "
            f"{hit['cpu_s'] / 60:.1f} CPU-min)"
            if hit
            else f"{TARGET} not reached"
        )
        print(
            f"- seed {seed}: max gap_closed {best['gap_closed']:.3f} (step {best['step']}); "
            f"{reach}; final {curve[-1]['gap_closed']:.3f}"
        )
    print("CURVES " + json.dumps(curves))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", type=Path, default=Path("runs/quickstart/task"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-steps", type=int, default=50)
    p.add_argument("--child-seed", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    a.task = a.task.resolve()
    if a.child_seed is not None:
        curve = run_seed(a.task, a.child_seed, a.steps, a.eval_steps)
        print("CURVE " + json.dumps(curve))
        return
    ensure_task(a.task)
    curves = {seed: spawn(a.task, seed, a.steps, a.eval_steps) for seed in a.seeds}
    report(curves, a.steps)


if __name__ == "__main__":
    main()
