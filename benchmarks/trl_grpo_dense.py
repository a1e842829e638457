"""TRL's GRPO from π_SFT with dense per-token rewards vs one reward per completion, at equal
samples, on the synthetic benchmark.

Variants (same reward model, prompts, samples, KL term and optimiser; only the advantages differ):

- `sequence`: `trl.GRPOTrainer` with `reward_funcs=as_reward_func(rm)`: the sum of the token
  rewards per completion; TRL's group advantage (R − group mean) / group std on every token.
- `dense`: `DenseRewardGRPOTrainer(dense_reward=rm)`: per-token leave-one-out reward-to-go
  advantages (RLOO, position by position), divided by the same group std of the returns.
- `terminal` (a control, with `--variants ... terminal`): `DenseRewardGRPOTrainer` with the
  reward model's sum moved to the last token. Its reward-to-go is R_i up to the completion's end
  and 0 after, so the position-by-position baseline at token t counts only the other completions
  still running at t: A_t^i = R_i − Σ_{j≠i, |y_j|>t} R_j / (k − 1). It is the dense trainer's
  reading of a terminal reward (our loops' `reward_mode: terminal` with `advantage:
  reward_to_go`), not GRPO's sequence advantage; it differs from `dense` only in where the
  rewards sit.

Settings (those of the RL phase of configs/synthetic/demo_rl.yaml where TRL has them): policy
and reference = π_SFT in fp32; 32 prompts × `num_generations` 8 = 256 completions per optimiser
step (one generation batch per update, `num_iterations` 1); temperature 1, top-p 1, top-k 0,
`max_completion_length` 24 (the horizon); `beta` 0.05 (TRL's per-token k3 KL to the reference
in the loss, the same for every variant); `scale_rewards="group"`; `loss_type="dapo"` (TRL's
default); AdamW lr 2e-3, constant after 5 warm-up steps (step 1 runs at lr 0), `max_grad_norm` 1;
TRL's `seed` = the run's seed, so every variant sees the same prompt order and the same first
batch. Prompts = the unique prompts of `<task>/demos` (train split). `--reward gold` is the
task's true reward r* per token (`irlalign.synthetic.gold.GoldReward`); any other value is a
reward-model string `load_reward_spec` reads (`implicit:<checkpoint>[,<reference>]`,
`log_ratio:<policy>,<reference>`, a folder).

Evaluation every `--eval-every` steps and of the final policy (and of π_SFT, the step-0 row): the
benchmark's own `policy_metrics` on `sample_model` draws (4 per held-out eval prompt, seed 0),
the steps of `eval_policy_model`: normalised gold score ± SE over prompts, KL(π‖π_ref) to the
task's reference, mean length (tokens, `<eos>` included); gap_closed = (J(π) − J(π_SFT)) /
(J* − J(π_SFT)) for the task's objective J = R − β_task·KL(π‖π_ref), β_task = 1; and
KL(π‖π_SFT), the mean over the same draws of Σ_t log π − log π_SFT, both scored under the
evaluation's task-action distribution (`sampling._score_batch`). Evaluations run inside
`torch.random.fork_rng`, so they leave TRL's sampling stream alone.

Each (variant, seed) runs in its own one-thread subprocess (OMP_NUM_THREADS=1) and writes
`<out>/<variant>_<reward>_s<steps>_p<prompts>_e<every>[_b<beta>]_<seed>.json`; finished results
are reused on a rerun with the same settings (delete a file to redo it). π_SFT's row is
`<out>/sft.json`.

    python benchmarks/trl_grpo_dense.py [--task runs/quickstart/task]
        [--sft runs/quickstart/sft/checkpoints/final] [--reward gold] [--seeds 0 1 2]
        [--steps 30] [--eval-every 5] [--prompts-per-step 32] [--beta 0.05]
        [--variants sequence dense [terminal]] [--out runs/bench_trl_grpo_dense]

Measured (TRL 1.16.0; runs/quickstart's default task and π_SFT; 30 steps = 7,680 completions per
run; 3 seeds; a (variant, seed) run took 1.7–2.6 min wall at one thread on a shared 2-core
machine, 1 to 1.6 min of it training, the rest loading and the six evaluations):

    python benchmarks/trl_grpo_dense.py --task runs/quickstart/task \
        --sft runs/quickstart/sft/checkpoints/final --reward gold --seeds 0 1 2 --steps 30 \
        --variants sequence dense terminal                                  # 20 min wall

| reward `gold` (r*), step 30 | norm. score | KL(π‖π_SFT) | KL(π‖π_ref) | length |
|---|---:|---:|---:|---:|
| π_SFT (0 steps) | 0.603 ± 0.017 | 0.00 | 2.81 | 14.92 |
| sequence (TRL GRPO) | 4.919 ± 0.073 | 53.1 ± 2.1 | 75.9 ± 3.1 | 22.85 |
| dense | 5.068 ± 0.059 | 55.7 ± 0.8 | 79.9 ± 1.0 | 22.97 |
| dense, beta 0.05714 (= 0.05 · 8/7) | 4.983 ± 0.068 | 54.8 ± 1.0 | 77.8 ± 1.7 | 22.97 |
| terminal (control) | 4.424 ± 0.102 | 58.8 ± 6.8 | 76.6 ± 6.5 | 22.69 |

| step (× 256 completions) | sequence | dense | dense, beta 0.05714 | terminal |
|---:|---:|---:|---:|---:|
| 5 | 1.137 ± 0.008 | 1.264 ± 0.028 | 1.265 ± 0.029 | 1.118 ± 0.009 |
| 10 | 2.922 ± 0.058 | 3.283 ± 0.007 | 3.247 ± 0.050 | 2.234 ± 0.393 |
| 15 | 3.727 ± 0.148 | 4.305 ± 0.067 | 4.154 ± 0.041 | 3.330 ± 0.101 |
| 20 | 4.369 ± 0.177 | 4.774 ± 0.066 | 4.732 ± 0.050 | 3.967 ± 0.092 |
| 25 | 4.677 ± 0.183 | 4.918 ± 0.068 | 4.893 ± 0.033 | 4.198 ± 0.087 |
| 30 | 4.919 ± 0.073 | 5.068 ± 0.059 | 4.983 ± 0.068 | 4.424 ± 0.102 |

Normalised gold score, mean ± SE over seeds (π_SFT: ± SE over eval prompts); per-seed rows are in
the script's output. With `--reward implicit:runs/quickstart/iqlearn/checkpoints/final,
runs/quickstart/task/pi_init` (IQLearn's implicit reward minus π_init's), same settings,
`--variants sequence dense`: step 30 sequence 2.719 ± 0.191, dense 2.613 ± 0.164; along the curve
(steps 5…30) the two are within about two combined SEs of each other, in both orders; both run to
the horizon (length 23.99) and KL(π‖π_SFT) ≈ 57–59.

Reading. With the true per-token reward, dense credit assignment learns faster at equal samples:
ahead at every evaluated step, by more than two combined SEs at steps 5 to 20 (e.g. step 15: 4.305
± 0.067 vs 3.727 ± 0.148); at step 30 both are near saturation and the difference (0.15 ± 0.09) is
within seed error. Matching beta to the leave-one-out scale (dense advantages are k/(k−1) = 8/7 of
GRPO's at the first token, so beta · 8/7 keeps the advantage-to-KL ratio of the sequence run)
leaves this unchanged. It is speed, not a better trade-off: per unit of KL(π‖π_SFT) the two land
on the same curve (sequence step 20: 4.37 at KL 44.9; dense step 15: 4.31 at KL 43.7; at KL 49.6
sequence 4.68, dense 4.68 interpolated between its steps 15 and 20), the dense run just travels it
with fewer samples. beta 0.05 holds little against r* (gold returns 22–24 at step 30): every run
ends near-deterministic (per-token entropy 0.13–0.52 nats, π_SFT 2.77), far from π_SFT and from
the task's KL-regularised optimum (normalised score 1 at β = 1, hence the negative gap_closed,
which measures that objective, not the one trained). The terminal control is the worst, likely
because the position-by-position baseline, which drops the completions that have ended, is a poor
baseline for a reward on the last token; so it does not isolate credit assignment, and the dense
trainer is not meant for terminal rewards. With the learned implicit reward, under which both
variants run to the horizon, dense credit shows no advantage: equal within seed error.
Checked for fairness: the same GRPOConfig (temperature 1, top-p 1, top-k 0, 256 completions per
step, beta to the same π_SFT reference, lr, seed) for every variant, and on 256 TRL completions
from π_SFT the dense rewards mapped onto the policy's tokens sum exactly to `as_reward_func`'s
scores (largest difference 0.0).
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

NUM_GENERATIONS = 8
BETA = 0.05
LR = 2e-3
EVAL_SAMPLES, EVAL_SEED = 4, 0  # EvalOptions' defaults
VARIANTS = ("sequence", "dense", "terminal")
CURVE = ("normalised_score", "normalised_score_se", "objective", "kl_sft", "kl_ref", "mean_length")


class TerminalReward:
    """A reward model's sequence score as one reward on the last token (the control variant)."""

    def __init__(self, rm):
        self.rm, self.tokenizer = rm, getattr(rm, "tokenizer", None)

    def score(self, prompts, responses):
        return self.rm.score(prompts, responses)

    def token_rewards(self, prompts, responses):
        rows = self.rm.token_rewards(prompts, responses)
        for row in rows:
            total = float(row.rewards.sum())
            row.rewards = row.rewards * 0.0
            if len(row.rewards):
                row.rewards[-1] = total
        return rows


def load_reward(spec: str, task: Path, tokenizer):
    if spec == "gold":
        from irlalign.synthetic.build import load_task
        from irlalign.synthetic.gold import GoldReward

        return GoldReward(load_task(task), tokenizer)
    from irlalign.modeling.reward_specs import load_reward_spec

    return load_reward_spec(spec)


def grpo_config(out: str, seed: int, steps: int, prompts_per_step: int, beta: float = BETA):
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=out,
        per_device_train_batch_size=prompts_per_step * NUM_GENERATIONS,  # completions per step
        gradient_accumulation_steps=1,
        num_generations=NUM_GENERATIONS,
        num_iterations=1,
        max_completion_length=24,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=beta,
        scale_rewards="group",
        loss_type="dapo",
        learning_rate=LR,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=5,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        max_steps=steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        seed=seed,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def kl_to(other, tokenizer, task, prompts, drawn, batch_size: int = 256) -> float:
    """Mean over the draws of Σ_t log π − log π_other under the evaluation's task-action
    distribution: the draws' own log π (`drawn.logp`) and the other model's, scored alike."""
    import torch

    from irlalign.synthetic.model import action_token_ids
    from irlalign.synthetic.sampling import _score_batch
    from irlalign.synthetic.text import prompt_text

    ids = torch.as_tensor(action_token_ids(task))
    eos, pad, horizon = tokenizer.eos_token_id, tokenizer.pad_token_id, task.config.horizon
    total = 0.0
    for start in range(0, len(drawn.actions), batch_size):
        rows = range(start, min(start + batch_size, len(drawn.actions)))
        heads, tails = [], []
        for i in rows:
            p = drawn.prompt_index[i]
            text = prompt_text(task, prompts.topics[p], prompts.words[p])
            heads.append(tokenizer(text, add_special_tokens=False)["input_ids"])
            tails.append(ids[torch.as_tensor(drawn.actions[i])].tolist())
        width = max(len(h) + len(t) for h, t in zip(heads, tails, strict=True))
        seq = torch.full((len(heads), width), pad)
        mask = torch.zeros_like(seq)
        for b, (h, t) in enumerate(zip(heads, tails, strict=True)):  # right-padded
            seq[b, : len(h) + len(t)] = torch.as_tensor(h + t)
            mask[b, : len(h) + len(t)] = 1
        with torch.no_grad():
            logits = other(input_ids=seq, attention_mask=mask).logits.float()
        steps = max(len(t) for t in tails)
        raw = torch.zeros(len(heads), steps, logits.shape[-1])
        new = torch.full((len(heads), steps), eos)
        for b, (h, t) in enumerate(zip(heads, tails, strict=True)):
            raw[b, : len(t)] = logits[b, len(h) - 1 : len(h) - 1 + len(t)]  # predicts t
            new[b, : len(t)] = torch.as_tensor(t)
        logp, _, _ = _score_batch(raw, new, ids, eos, horizon)
        for b, i in enumerate(rows):
            n = len(tails[b])
            total += float(drawn.logp[i].sum() - logp[b, :n].sum())
    return total / len(drawn.actions)


def evaluate(task: Path, model, tokenizer, sft) -> dict:
    """`eval_policy_model`'s metrics (its three steps, keeping the draws) plus KL(π‖π_SFT);
    leaves the model's train/eval mode and the tokenizer's padding side as they were."""
    from irlalign.synthetic import evaluate as ev
    from irlalign.synthetic.build import load_eval_prompts, load_task
    from irlalign.synthetic.sampling import sample_model

    t = load_task(task)
    prompts = load_eval_prompts(t, task)
    was_training, side = model.training, tokenizer.padding_side
    try:
        drawn = sample_model(model.eval(), tokenizer, t, prompts, EVAL_SAMPLES, EVAL_SEED)
        res = ev.policy_metrics(t, prompts, drawn)
        res["kl_sft"] = kl_to(sft.eval(), tokenizer, t, prompts, drawn)
    finally:
        model.train(was_training)
        tokenizer.padding_side = side
    return res


def curve_callback(task: Path, tokenizer, sft, every: int):
    """Evaluates the policy every `every` steps and at the last one, inside
    `torch.random.fork_rng`: the evaluation seeds the global RNG, and would otherwise reset
    TRL's sampling stream to the same state in every run."""
    import torch
    from transformers import TrainerCallback

    from irlalign.modeling.forward import unwrap

    class Curve(TrainerCallback):
        def __init__(self):
            self.points: list[dict] = []
            self.final: dict = {}
            self.eval_s = 0.0  # wall seconds spent evaluating, left out of the training time

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % every and state.global_step != state.max_steps:
                return
            start = time.perf_counter()
            with torch.random.fork_rng(devices=[]):
                self.final = evaluate(task, unwrap(model), tokenizer, sft)
            self.points.append({"step": state.global_step, **{k: self.final[k] for k in CURVE}})
            self.eval_s += time.perf_counter() - start

    return Curve()


def run_child(a) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from irlalign.modeling.load import load_tokenizer

    torch.set_num_threads(1)
    tokenizer = load_tokenizer(a.sft)
    sft = AutoModelForCausalLM.from_pretrained(a.sft)
    if a.child == "sft":
        return {
            "variant": "sft",
            "seed": a.child_seed,
            "steps": 0,
            **evaluate(a.task, sft, tokenizer, sft),
        }
    from irlalign.integrations.trl import DenseRewardGRPOTrainer, as_reward_func
    from rloo_vs_trl import prompt_pool  # benchmarks/ is on sys.path when run

    rm = load_reward(a.reward, a.task, tokenizer)
    out = tempfile.mkdtemp(prefix=f"trl_grpo_{a.child}_{a.child_seed}_")
    curve = curve_callback(a.task, tokenizer, sft, a.eval_every)
    common = dict(
        model=a.sft,
        args=grpo_config(out, a.child_seed, a.steps, a.prompts_per_step, a.beta),
        train_dataset=Dataset.from_dict({"prompt": prompt_pool(a.task, tokenizer)}),
        processing_class=tokenizer,
        callbacks=[curve],
    )
    if a.child == "sequence":
        trainer = __import__("trl").GRPOTrainer(reward_funcs=as_reward_func(rm), **common)
    else:
        reward = rm if a.child == "dense" else TerminalReward(rm)
        trainer = DenseRewardGRPOTrainer(dense_reward=reward, **common)
    # Equal samples: one generation batch of prompts × k completions per optimiser step.
    assert trainer.args.generation_batch_size == a.prompts_per_step * NUM_GENERATIONS
    start = time.perf_counter()
    trainer.train()
    shutil.rmtree(out, ignore_errors=True)
    logs = [h for h in trainer.state.log_history if "reward" in h]
    return {
        "variant": a.child,
        "seed": a.child_seed,
        "steps": a.steps,
        "reward": a.reward,
        "train_wall_s": time.perf_counter() - start - curve.eval_s,
        "train_reward_last": logs[-1]["reward"] if logs else None,
        "train_kl_last": logs[-1].get("kl") if logs else None,
        "curve": curve.points,
        **curve.final,
    }


def spawn(a, variant: str, seed: int, path: Path) -> dict:
    """One (variant, seed) run in a fresh one-thread subprocess; its result saved to `path`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    flags = {
        "--task": a.task,
        "--sft": a.sft,
        "--reward": a.reward,
        "--steps": a.steps,
        "--prompts-per-step": a.prompts_per_step,
        "--eval-every": a.eval_every,
        "--beta": a.beta,
        "--child": variant,
        "--child-seed": seed,
    }
    cmd = [sys.executable, __file__, *(str(x) for kv in flags.items() for x in kv)]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode or not line:
        sys.exit(f"{variant} seed {seed} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    res = {**json.loads(line[-1][len("RESULT ") :]), "wall_s": time.perf_counter() - t}
    path.write_text(json.dumps(res, indent=1))
    print(f"  {variant} seed {seed}: {res['wall_s']:.0f} s wall", file=sys.stderr, flush=True)
    return res


def mean_se(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {statistics.stdev(values) / math.sqrt(len(values)):.3f}"


def gap(res: dict, sft: dict) -> float:
    from irlalign.synthetic.evaluate import gap_closed

    return gap_closed(res["objective"], sft["objective"], res["optimal_objective"])


def row(label: str, seed: str, r: dict, sft: dict, wall: str) -> str:
    return (
        f"| {label} | {seed} | {r['normalised_score']:.3f} ± {r['normalised_score_se']:.3f} | "
        f"{gap(r, sft):.3f} | {r['kl_sft']:.2f} | {r['kl_ref']:.2f} | {r['mean_length']:.2f} | "
        f"{wall} |"
    )


def report(rows: dict[str, list[dict]], sft: dict, a) -> None:
    import trl

    n = a.prompts_per_step * NUM_GENERATIONS
    print(
        f"\nTRL {trl.__version__} GRPO from π_SFT, reward `{a.reward}`: {a.prompts_per_step} "
        f"prompts × {NUM_GENERATIONS} = {n} completions/step, {a.steps} steps, beta {a.beta:g} (KL "
        f"to π_SFT), lr {LR}; eval {EVAL_SAMPLES} samples × {sft['n_prompts']} prompts\n"
    )
    print(
        "| variant | seed | norm. score ± SE | gap_closed | KL(π‖π_SFT) | KL(π‖π_ref) | length "
        "| train wall s |\n|---|---|---:|---:|---:|---:|---:|---:|"
    )
    print(row("π_SFT (0 steps)", "–", sft, sft, "–"))
    for variant, rs in rows.items():
        for r in rs:
            print(row(variant, str(r["seed"]), r, sft, f"{r['train_wall_s']:.0f}"))
        if len(rs) > 1:
            cells = [
                mean_se([k(r) for r in rs])
                for k in (
                    lambda r: r["normalised_score"],
                    lambda r: gap(r, sft),
                    lambda r: r["kl_sft"],
                    lambda r: r["kl_ref"],
                    lambda r: r["mean_length"],
                )
            ]
            print(f"| **{variant}** | mean ± SE | " + " | ".join(cells) + " | |")
    print("\n(SE in a per-seed row: over the eval prompts; in a mean row: over seeds.)")
    steps = [p["step"] for p in next(iter(rows.values()))[0]["curve"]]
    print(f"\nNormalised score by step (samples = step × {n}), mean ± SE over seeds:\n")
    print("| step | samples | " + " | ".join(rows) + " |\n|---:|---:|" + "---:|" * len(rows))
    print("| 0 | 0 | " + " | ".join(f"{sft['normalised_score']:.3f}" for _ in rows) + " |")
    for i, step in enumerate(steps):
        cells = [mean_se([r["curve"][i]["normalised_score"] for r in rs]) for rs in rows.values()]
        print(f"| {step} | {step * n} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", type=Path, default=Path("runs/quickstart/task"))
    p.add_argument("--sft", default="runs/quickstart/sft/checkpoints/final")
    p.add_argument("--reward", default="gold", help="gold, or a reward-model string")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--prompts-per-step", type=int, default=32, help="× 8 completions each")
    p.add_argument("--eval-every", type=int, default=5, help="curve: evaluate every N steps")
    p.add_argument("--beta", type=float, default=BETA, help="TRL's KL coefficient (to π_SFT)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=["sequence", "dense"])
    p.add_argument("--out", type=Path, default=Path("runs/bench_trl_grpo_dense"))
    p.add_argument("--child", choices=("sft", *VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--child-seed", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    a.task = a.task.resolve()
    a.sft = str(Path(a.sft).resolve())
    if a.child:
        print("RESULT " + json.dumps(run_child(a)))
        return
    a.out.mkdir(parents=True, exist_ok=True)
    # Finished results are reused only for the settings they were run with.
    reward = a.reward.replace("/", "_").replace(":", "_")
    tag = f"{reward}_s{a.steps}_p{a.prompts_per_step}_e{a.eval_every}"
    tag += "" if a.beta == BETA else f"_b{a.beta:g}"

    def result(variant: str, seed: int) -> dict:
        path = a.out / f"{variant}_{tag}_{seed}.json"
        return json.loads(path.read_text()) if path.exists() else spawn(a, variant, seed, path)

    t = time.perf_counter()
    sft_path = a.out / "sft.json"
    sft = json.loads(sft_path.read_text()) if sft_path.exists() else spawn(a, "sft", 0, sft_path)
    # Seed by seed, so that an interrupted run leaves paired (variant, seed) results.
    done = {(v, s): result(v, s) for s in a.seeds for v in a.variants}
    rows = {v: [done[v, s] for s in a.seeds] for v in a.variants}
    report(rows, sft, a)
    print(f"\nwall time of this invocation: {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
