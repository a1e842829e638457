"""Sampling throughput of `HFSampler`, and the RLOO step time of our loop vs TRL's `RLOOTrainer`.

One run measures, on the synthetic task's π_init (tiny Llama, vocabulary 60), its demonstration
prompts and the same generation length:

1. `sampler`: generated tokens/s of `irlalign.generation.sampling.HFSampler.sample` (batched
   `model.generate`, log-probs recorded during generation), and, for reference, of the bare
   `model.generate` call it makes (same prompts, k, length; no post-processing).
   `benchmarks/sampler_throughput.py` measures the same ratio with interleaved calls.
2. `irlalign`: seconds per iteration of `train_rloo`, run through
   `irlalign.methods.resolve("rloo", raw)` + `train(cfg)`.
3. `trl`: seconds per optimizer step of `trl.RLOOTrainer` on the same checkpoint.

Each measurement runs in a fresh subprocess (so peak RSS is per variant), with the same torch
thread count (`--threads`, default 1, also exported as OMP/MKL_NUM_THREADS: the machine is
shared), and the RLOO variants alternate over `--rounds` rounds (order flipped each round); the
table reports medians over rounds, and "× TRL" is the median of the per-round ratios (each
irlalign run against the TRL run next to it, so both saw about the same machine load).

    python benchmarks/rloo_vs_trl.py [--task runs/quickstart/task] [--steps 20] [--warmup 2]
        [--rounds 3] [--threads 1] [--batch 16] [--k 4] [--max-new-tokens 24]

(`--batch` is another name for `--prompts-per-step`; a quick run is `--steps 2 --warmup 1
--rounds 1 --batch 4 --k 2 --max-new-tokens 8 --sample-prompts 8 --sample-reps 1`.)

The task folder is built with `irlalign.synthetic.build.build(task, SyntheticConfig())` if it
has no `task.json`.

Matched between the two RLOO steps: policy checkpoint and tokenizer; prompt pool (the unique
`prompt`s of `<task>/demos`, train split, both shuffled); prompts per step (16) × samples per
prompt (k = TRL's `num_generations` = 4), so 64 completions per step, generated in one
`generate` call (TRL: `per_device_train_batch_size = 64`, `gradient_accumulation_steps = 1`,
hence `steps_per_generation = 1`, `num_iterations = 1`: one generation batch, one forward/backward
over all 64 rows, one optimizer step per step); `max_new_tokens = max_completion_length = 24`,
temperature 1, no top-p/top-k; reward = the synthetic gold reward's sequence score
`GoldReward.score` on the decoded completions (ours: `reward_model: gold, reward_mode: terminal`,
which calls exactly that; TRL: the same call wrapped as a reward function); sequence-level KL
penalty β·Σ_t(log π − log π_ref) in the reward with β = `kl_coef` = `beta`; leave-one-out
baseline, no advantage whitening, no reward normalisation; AdamW (`optim="adamw_torch"`, not the
fused default) with lr 1e-3, no weight decay, linear schedule, no warmup, gradient clipping at
1.0; fp32 (TRL's `bf16` default turned off); no gradient checkpointing (TRL defaults to it; we
turn it off, our loop has none); no evaluation, no checkpoints during training (TRL
`save_strategy="no"`, ours `save_steps` = 10^9); both log metrics every step (ours one JSON line,
TRL its in-memory log history).

Remaining differences in what one step does:

- TRL's loss is the clipped PPO-style surrogate on sequence log-prob ratios against the
  generation-time log-probs; with `num_iterations = 1` the ratio is 1, so the gradient equals our
  REINFORCE-with-baseline loss, but TRL also computes per-token entropies in the training forward
  and gathers clip-ratio / entropy / reward metrics (a few `.item()` syncs).
- TRL runs a no-grad policy forward after generation for the old log-probs (over left-padded
  prompt + completion with its fused LM head restricted to completion positions); ours reads
  them from the generation pass. Both then run a reference forward and the training
  forward/backward.
- TRL builds its reference by loading the checkpoint again; ours deep-copies the policy.
- Our loop draws prompts by a seeded per-step shuffle and samples each prompt's k completions
  with `num_return_sequences = k`; TRL's `RepeatSampler` repeats each prompt k times in the
  batch. Completions differ (different RNG streams, and the two policies then drift apart), so
  lengths differ somewhat; the table reports the mean completion length of each side. Both
  `generate` calls run until every row has ended or reached the 24-token budget, so generation
  time follows the longest row more than the mean length.
- Timing: ours = differences of the loop's own per-step `time/elapsed_s` (logged after each
  update); TRL = time between `on_step_end` callbacks (everything the Trainer does per step,
  dataloader included). The first `--warmup` steps are excluded. Setup (model loading, TRL's
  dataset preparation) and teardown (our final checkpoint) are excluded. Our loop's end-of-run
  synthetic evaluation is switched off in the child process
  (`irlalign.loops.evaluation.evaluate_policy` replaced by a no-op) so that it neither costs time
  nor raises the peak RSS; TRL has no evaluation here.
- Peak RSS is the child process's `ru_maxrss` (its imports included: TRL's process imports trl
  and its dependencies); "Δ RSS" is its growth over the peak measured just before the models
  are loaded (ours: before `train(cfg)`; TRL: before `RLOOTrainer(...)`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_cost import add_policy_options, policy_of_shape  # noqa: E402


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def ensure_task(task: Path) -> None:
    if (task / "task.json").exists():
        return
    from irlalign.synthetic.build import build
    from irlalign.synthetic.config import SyntheticConfig

    print(f"building the default synthetic task in {task}", file=sys.stderr)
    build(task, SyntheticConfig())


def prompt_pool(task: Path, tokenizer) -> list[str]:
    """The unique prompts of `<task>/demos` (train split), as our online loops load them."""
    from irlalign.loops.setup import load_prompts

    return load_prompts(str(task / "demos"), "train", tokenizer)


# ---------------------------------------------------------------------------------------------
# children


def run_sampler(a) -> dict:
    import torch

    from irlalign.generation.sampling import HFSampler, SamplingConfig, _cut
    from irlalign.modeling.load import ModelOptions, load_model, load_tokenizer

    tok = load_tokenizer(a.policy)
    model = load_model(ModelOptions(path=a.policy)).eval().to(a.device)
    if a.bf16:
        model = model.to(torch.bfloat16)
    prompts = prompt_pool(a.task, tok)[: a.sample_prompts]
    cfg = SamplingConfig(max_new_tokens=a.max_new_tokens, batch_size=a.sample_prompts)
    sampler = HFSampler(model, tok, cfg)
    before = rss_mib()

    def sample() -> int:
        return int(sampler.sample(prompts, a.k).completion_mask.sum())

    def generate_only() -> int:
        side, tok.padding_side = tok.padding_side, "left"
        enc = tok(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
        enc = enc.to(a.device)
        tok.padding_side = side
        with torch.no_grad():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                max_new_tokens=a.max_new_tokens,
                num_return_sequences=a.k,
                pad_token_id=tok.pad_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        return sum(len(_cut(row, tok.eos_token_id, tok.pad_token_id)[0]) for row in new)

    res = {}
    for name, fn in (("hfsampler", sample), ("generate", generate_only)):
        times, tokens = [], []
        for i in range(a.sample_warmup + a.sample_reps):
            torch.manual_seed(i)
            t = time.perf_counter()
            n = fn()
            dt = time.perf_counter() - t
            if i >= a.sample_warmup:
                times.append(dt)
                tokens.append(n)
        res[name] = {
            "s_per_call": statistics.median(times),
            "tokens_per_s": statistics.median(n / t for n, t in zip(tokens, times, strict=True)),
            "mean_length": statistics.mean(tokens) / (len(prompts) * a.k),
        }
    res["peak_rss_mib"] = rss_mib()
    res["delta_rss_mib"] = rss_mib() - before
    return res | gpu_peak()


def run_irlalign(a) -> dict:
    from irlalign.loops import evaluation
    from irlalign.methods import resolve, train

    # "No eval": the loop's end-of-run synthetic evaluation is not part of a step; skip it.
    evaluation.evaluate_policy = lambda *args, **kwargs: {}
    out = Path(tempfile.mkdtemp(prefix="bench_rloo_ours_"))
    raw = {
        "model": {"path": a.policy},
        "data": {"train": str(a.task / "demos")},
        "method": {
            "reward_model": "gold",
            "reward_mode": "terminal",  # GoldReward.score, the same call as the TRL reward fn
            "reward_norm": "none",
            "kl_coef": a.beta,
            "k": a.k,
            "prompts_per_step": a.prompts_per_step,
            "micro_batch": a.prompts_per_step * a.k,  # one forward/backward, like TRL
            "normalize_advantages": False,
            "sampling": {
                "temperature": 1.0,
                "top_p": 1.0,
                "top_k": 0,
                "max_new_tokens": a.max_new_tokens,
                "batch_size": a.prompts_per_step,  # one generate call per step
            },
        },
        "training": {
            "output_dir": str(out),
            "max_steps": a.warmup + a.steps,
            "learning_rate": a.lr,
            "weight_decay": 0.0,
            "warmup_steps": 0,
            "max_grad_norm": 1.0,
            "logging_steps": 1,
            "save_steps": 10**9,
            "eval_steps": None,
            "seed": 0,
            "use_cpu": a.device == "cpu",
            "bf16": a.bf16,
            "disable_tqdm": True,
        },
        "eval": {"synthetic_task": str(a.task), "samples": 1},  # the gold reward reads the task
    }
    cfg = resolve("rloo", raw)
    before = rss_mib()
    train(cfg)
    peak = rss_mib()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if "rl/reward" in r]
    shutil.rmtree(out, ignore_errors=True)
    elapsed = [0.0] + [r["time/elapsed_s"] for r in rows]
    durations = [b - c for b, c in zip(elapsed[1:], elapsed[:-1], strict=True)]
    timed = durations[a.warmup :]
    return {
        "steps": len(rows),
        "median_s": statistics.median(timed),
        "mean_s": (elapsed[-1] - elapsed[a.warmup]) / len(timed),
        "mean_length": statistics.mean(r["rl/length"] for r in rows),
        "peak_rss_mib": peak,
        "delta_rss_mib": peak - before,
    } | gpu_peak()


def run_trl(a) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    from irlalign.modeling.load import load_tokenizer
    from irlalign.synthetic.build import load_task
    from irlalign.synthetic.gold import GoldReward

    path = a.policy
    tok = load_tokenizer(path)
    gold = GoldReward(load_task(a.task), tok)

    def gold_reward(prompts, completions, **kwargs) -> list[float]:
        return [float(x) for x in gold.score(prompts, completions)]

    class StepClock(TrainerCallback):
        def __init__(self):
            self.marks: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.marks = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            self.marks.append(time.perf_counter())

    out = tempfile.mkdtemp(prefix="bench_rloo_trl_")
    args = RLOOConfig(
        output_dir=out,
        per_device_train_batch_size=a.prompts_per_step * a.k,  # completions per step
        gradient_accumulation_steps=1,
        num_generations=a.k,
        num_iterations=1,
        max_completion_length=a.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=a.beta,
        normalize_advantages=False,
        learning_rate=a.lr,
        weight_decay=0.0,
        lr_scheduler_type="linear",
        warmup_steps=0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        max_steps=a.warmup + a.steps,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        use_cpu=a.device == "cpu",
        bf16=a.bf16,
        gradient_checkpointing=False,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    clock = StepClock()
    dataset = Dataset.from_dict({"prompt": prompt_pool(a.task, tok)})
    before = rss_mib()
    trainer = RLOOTrainer(
        model=path,
        reward_funcs=gold_reward,
        args=args,
        train_dataset=dataset,
        processing_class=tok,
        callbacks=[clock],
    )
    trainer.train()
    peak = rss_mib()
    durations = [b - c for b, c in zip(clock.marks[1:], clock.marks[:-1], strict=True)]
    timed = durations[a.warmup :]
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "loss" in h]
    shutil.rmtree(out, ignore_errors=True)
    return {
        "steps": len(durations),
        "median_s": statistics.median(timed),
        "mean_s": (clock.marks[-1] - clock.marks[a.warmup]) / len(timed),
        "mean_length": statistics.mean(lengths) if lengths else float("nan"),
        "peak_rss_mib": peak,
        "delta_rss_mib": peak - before,
    } | gpu_peak()


def gpu_peak() -> dict:
    """Peak GPU memory of this child, when it ran on one."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.max_memory_allocated():
        return {}
    return {"peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20}


CHILDREN = {"sampler": run_sampler, "irlalign": run_irlalign, "trl": run_trl}


def child(a) -> None:
    import torch

    torch.set_num_threads(a.threads)
    res = CHILDREN[a.child](a)
    res["threads"] = torch.get_num_threads()
    print(json.dumps(res))


# ---------------------------------------------------------------------------------------------
# parent


def spawn(name: str, argv: list[str], threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.setdefault("HF_HUB_OFFLINE", "1")
    t = time.perf_counter()
    res = subprocess.run(
        [sys.executable, __file__, *argv, "--child", name],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if res.returncode:
        sys.stderr.write(res.stderr[-4000:])
        raise SystemExit(f"{name} failed (exit {res.returncode})")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"  {name}: {out} ({time.perf_counter() - t:.0f} s wall)", file=sys.stderr, flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", type=Path, default=Path("runs/quickstart/task"))
    p.add_argument("--steps", type=int, default=20, help="timed RLOO steps per run")
    p.add_argument("--warmup", type=int, default=2, help="untimed RLOO steps before them")
    p.add_argument("--rounds", type=int, default=3, help="alternating irlalign/TRL runs")
    p.add_argument("--prompts-per-step", "--batch", type=int, default=16)
    p.add_argument("--k", type=int, default=4, help="samples per prompt (TRL num_generations)")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta", type=float, default=0.05, help="KL coefficient (ours kl_coef)")
    p.add_argument("--sample-prompts", type=int, default=64)
    p.add_argument("--sample-reps", type=int, default=5)
    p.add_argument("--sample-warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads in every child")
    add_policy_options(p)
    p.add_argument("--policy", help=argparse.SUPPRESS)
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    a = p.parse_args()
    a.task = a.task if a.task.is_absolute() else (Path.cwd() / a.task).resolve()
    if a.child:
        child(a)
        return
    ensure_task(a.task)
    policy_dir = Path(tempfile.mkdtemp(prefix="bench_rloo_policy_"))
    a.policy = policy_of_shape(a.task, a.shape, policy_dir)
    argv = [
        f"--policy={a.policy}",
        f"--device={a.device}",
        *(["--bf16"] if a.bf16 else []),
        f"--task={a.task}",
        f"--steps={a.steps}",
        f"--warmup={a.warmup}",
        f"--prompts-per-step={a.prompts_per_step}",
        f"--k={a.k}",
        f"--max-new-tokens={a.max_new_tokens}",
        f"--lr={a.lr}",
        f"--beta={a.beta}",
        f"--sample-prompts={a.sample_prompts}",
        f"--sample-reps={a.sample_reps}",
        f"--sample-warmup={a.sample_warmup}",
        f"--threads={a.threads}",
    ]
    import torch
    import transformers
    import trl

    started = time.perf_counter()
    samp = spawn("sampler", argv, a.threads)
    runs: dict[str, list[dict]] = {"irlalign": [], "trl": []}
    for r in range(a.rounds):
        for name in ("irlalign", "trl") if r % 2 == 0 else ("trl", "irlalign"):
            runs[name].append(spawn(name, argv, a.threads))

    def med(name: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[name])

    # Paired ratios: irlalign vs the TRL run of the same round (back to back, same load).
    paired = [
        o["median_s"] / t["median_s"] for o, t in zip(runs["irlalign"], runs["trl"], strict=True)
    ]
    try:
        task_label = a.task.relative_to(Path.cwd())
    except ValueError:
        task_label = a.task
    print(
        f"\ntorch {torch.__version__}, transformers {transformers.__version__}, trl "
        f"{trl.__version__}; {a.device}{', bf16' if a.bf16 else ', fp32'}, {a.threads} torch "
        f"thread(s) per process; policy: {policy_label(a, task_label)}; k={a.k}, "
        f"max_new_tokens={a.max_new_tokens}\n"
    )
    print(
        f"Sampling: {a.sample_prompts} prompts × k={a.k} in one call, median of "
        f"{a.sample_reps} calls after {a.sample_warmup} warm-up\n"
    )
    print("| sampler | s / call | generated tokens/s | mean length | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    for key, label in (("hfsampler", "HFSampler.sample"), ("generate", "model.generate only")):
        r = samp[key]
        print(
            f"| {label} | {r['s_per_call']:.3f} | {r['tokens_per_s']:.0f} | "
            f"{r['mean_length']:.1f} | {samp['peak_rss_mib']:.0f} |"
        )
    print(
        f"\nRLOO: {a.prompts_per_step} prompts × k={a.k} per step, lr {a.lr:g}, β {a.beta:g}, "
        f"{a.steps} timed steps after {a.warmup} warm-up; medians over {a.rounds} alternating "
        f"round(s); × TRL = median of the per-round ratios of median s/step\n"
    )
    print(
        "| loop | median s/step | mean s/step | × TRL | mean completion length | "
        "peak RSS MiB | Δ RSS MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, label, ratio in (
        ("irlalign", "irlalign train_rloo", statistics.median(paired)),
        ("trl", "TRL RLOOTrainer", 1.0),
    ):
        print(
            f"| {label} | {med(name, 'median_s'):.3f} | {med(name, 'mean_s'):.3f} | "
            f"{ratio:.2f} | {med(name, 'mean_length'):.1f} | "
            f"{med(name, 'peak_rss_mib'):.0f} | {med(name, 'delta_rss_mib'):.0f} |"
        )
    wall = time.perf_counter() - started
    rounds = ", ".join(f"{x:.2f}" for x in paired)
    print(f"\nirlalign / TRL per round: {rounds}; total wall {wall:.0f} s")
    gpu = [f"{n} {med(n, 'peak_gpu_mib'):.0f}" for n in runs if "peak_gpu_mib" in runs[n][0]]
    if gpu:
        print(f"peak GPU MiB (median over rounds): {', '.join(gpu)}")
    shutil.rmtree(policy_dir, ignore_errors=True)


def policy_label(a, task_label) -> str:
    if a.shape == "task":
        return f"π_init of {task_label}"
    return f"{a.shape} backbone, random weights, the vocabulary of {task_label}"


if __name__ == "__main__":
    main()
