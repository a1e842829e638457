"""How fast RLOO and PPO reach the KL-regularised optimum of the default synthetic task.

Against the true dense reward r* with the KL coefficient equal to the task's β, the optimum of
E[R] − β·KL(π‖π_ref) is the expert π* itself, so the fraction of the gap closed,
gap_closed = (J(π) − J(π₀)) / (J* − J(π₀)), measures how close a run gets. Each run is one
process on one thread; curves are read from its `metrics.jsonl` (evaluations every
`--eval-steps`, their CPU time excluded from `time/train_cpu_s`).

    python benchmarks/rl_to_optimum.py --variant rloo_new --seeds 0 1 2 [--task DIR]
        [--set method.k=8 --set training.learning_rate=3e-3 ...]

Variants are the shipped presets (`rloo_new`, `ppo_new`: configs/synthetic/rloo.yaml and
ppo.yaml) and the settings they replaced (`rloo_old`, `ppo_old`), plus `ppo_new_terminal` and
`ppo_old_terminal` (the sequence score on the last token). The table reports gap_closed and the
normalised score at each evaluation, and the samples and CPU time to reach gap_closed 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# The settings the presets had before (k, prompts per step, lr and schedule): a reference row.
OLD = {
    "rloo": {
        "method": {"k": 4, "prompts_per_step": 16, "advantage": "sequence"},
        "training": {"learning_rate": 1e-3, "warmup_steps": 5, "lr_scheduler_type": "linear"},
    },
    "ppo": {
        "method": {"k": 1, "prompts_per_step": 32, "ppo_epochs": 4, "num_minibatches": 2},
        "training": {"learning_rate": 1e-3, "warmup_steps": 5, "lr_scheduler_type": "linear"},
    },
}


def variant_config(variant: str, task: Path, out: Path, seed: int, steps: int, every: int, sets):
    from irlalign.demo.plan import merge, preset_config

    method_name = variant.split("_")[0]
    overrides = {"training": {"max_steps": steps, "eval_steps": every, "save_steps": 10**6}}
    if "_old" in variant:
        overrides = merge(OLD[method_name], overrides)
    if variant.endswith("_terminal"):
        overrides = merge(overrides, {"method": {"reward_mode": "terminal"}})
    for item in sets:  # --set section.key=value, values parsed as YAML
        import yaml

        from irlalign.config import set_nested

        key, _, value = item.partition("=")
        set_nested(overrides, key, yaml.safe_load(value))
    return preset_config(
        method_name, task_dir=task, runs_root=out, output_dir=out, seed=seed, overrides=overrides
    )


def run_one(variant: str, task: Path, seed: int, steps: int, every: int, sets) -> list[dict]:
    import torch

    from irlalign.methods import resolve, train

    torch.set_num_threads(1)
    out = Path(tempfile.mkdtemp(prefix=f"rl_{variant}_{seed}_"))
    method_name, raw = variant_config(variant, task, out, seed, steps, every, sets)
    cfg = resolve(method_name, raw)
    train(cfg)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    per_step = cfg.method_config.prompts_per_step * cfg.method_config.k
    return [
        {
            "step": r["step"],
            "samples": r["step"] * per_step,
            "cpu_s": r["time/train_cpu_s"],
            "gap_closed": r["eval/gap_closed"],
            "score": r["eval/normalised_score"],
        }
        for r in rows
        if "eval/gap_closed" in r
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--task", type=Path, default=Path("runs/quickstart/task"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-steps", type=int, default=25)
    p.add_argument("--set", action="append", default=[], help="section.key=value override")
    p.add_argument("--child-seed", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child_seed is not None:
        curve = run_one(a.variant, a.task, a.child_seed, a.steps, a.eval_steps, a.set)
        print("CURVE " + json.dumps(curve))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    curves = {}
    for seed in a.seeds:
        cmd = [sys.executable, __file__, "--variant", a.variant, "--task", str(a.task)]
        cmd += ["--steps", str(a.steps), "--eval-steps", str(a.eval_steps)]
        cmd += [f"--set={x}" for x in a.set]
        done = subprocess.run([*cmd, "--child-seed", str(seed)], env=env, capture_output=True)
        line = [x for x in done.stdout.decode().splitlines() if x.startswith("CURVE ")]
        if not line:
            sys.exit(done.stderr.decode()[-3000:])
        curves[seed] = json.loads(line[-1][6:])
    sets = " ".join(a.set)
    print(f"\n{a.variant} {sets}: gap_closed / normalised score per evaluation, seeds {a.seeds}\n")
    print("| step | samples | train CPU s | " + " | ".join(f"seed {s}" for s in a.seeds) + " |")
    print("|---:|---:|---:|" + "---:|" * len(a.seeds))
    for i, point in enumerate(curves[a.seeds[0]]):
        cells = [f"{c[i]['gap_closed']:.3f} / {c[i]['score']:.3f}" for c in curves.values()]
        print(
            f"| {point['step']} | {point['samples']} | {point['cpu_s']:.0f} | "
            + " | ".join(cells)
            + " |"
        )
    for seed, curve in curves.items():
        hit = next((pt for pt in curve if pt["gap_closed"] >= 0.9), None)
        reach = (
            f"{hit['samples']} samples, {hit['cpu_s'] / 60:.1f} CPU-min" if hit else "not reached"
        )
        print(f"- seed {seed}: gap_closed 0.9 at {reach}; final {curve[-1]['gap_closed']:.3f}")
    print("CURVES " + json.dumps(curves))


if __name__ == "__main__":
    main()
