"""Multi-seed table: SFT vs offline IQLearn on the synthetic benchmark's demonstrations.

For each number of demonstrations (100, 2000), each method (SFT; IQLearn with λ in {0.01, 0.1,
1.0}) and each training seed, trains from π_init with the `configs/synthetic/*.yaml` presets
through the library's own pipeline and evaluates with `irlalign synthetic eval`'s metrics. Prints
mean ± standard error over seeds of the normalised score, self-BLEU, distinct-2, entropy and
KL(π‖π*), and writes every row to `--out/results.jsonl`.

    python benchmarks/iqlearn_vs_sft.py --task runs/task [--seeds 0 1 2] [--out runs/bench_iq]

`--frontier` instead compares quality–diversity frontiers: each variant trains for the largest of
`--steps` with a checkpoint at every listed step, and every checkpoint is sampled at each of
`--temperatures` plus greedy decoding (same prompts and seed for every policy). It prints, per
variant and step, the normalised score and self-BLEU at each temperature (mean over seeds), and
for each IQLearn variant whether its frontier (1 − self-BLEU vs score, seed-averaged) dominates,
is dominated by, or crosses SFT's at the same step, and SFT's best step (checkpoint selection by
the score at temperature 1). For tasks whose horizon differs from the presets' 24 tokens, the
evaluation's sampling follows the task.

    python benchmarks/iqlearn_vs_sft.py --task runs/variants/iqlearn_lowdata --frontier \
        --steps 100 300 600 --demos 150 --lams 0.01 0.1 [--value-head]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = (
    ("SFT", "sft", None),
    ("IQLearn λ=0.01", "iqlearn", 0.01),
    ("IQLearn λ=0.1", "iqlearn", 0.1),
    ("IQLearn λ=1.0", "iqlearn", 1.0),
)
METRICS = ("normalised_score", "self_bleu", "distinct_2", "entropy", "kl_expert")


def run_one(task: str, out: Path, method: str, lam, n_demos: int, seed: int, **training) -> dict:
    from irlalign.methods import resolve, train

    raw = yaml.safe_load((ROOT / "configs" / "synthetic" / f"{method}.yaml").read_text())
    raw["model"]["path"] = f"{task}/pi_init"
    raw["data"]["train"] = f"{task}/demos"
    raw["data"]["max_rows"] = n_demos
    raw["training"].update(output_dir=str(out), seed=seed, disable_tqdm=True, save_steps=10**6)
    raw["training"].update(training)
    raw["eval"] = {"synthetic_task": task, "seed": seed}
    if lam is not None:
        raw["method"]["lam"] = lam
    if lam is not None and VALUE_HEAD:
        raw["method"]["value_head"] = True
    return train(resolve(method, raw))["synthetic"]


VALUE_HEAD = False  # --value-head: IQLearn with its value head


def frontier(a: argparse.Namespace, out: Path) -> None:
    from irlalign.eval.frontier import compare_frontiers, frontier_points
    from irlalign.synthetic.runner import eval_frontier

    head = " + value head" if VALUE_HEAD else ""  # its own label and run folder: no row reuse
    variants = [("SFT", "sft", None)] + [(f"IQLearn λ={x:g}{head}", "iqlearn", x) for x in a.lams]
    last = max(a.steps)
    log = out / "frontier.jsonl"  # rows of an earlier, interrupted run are kept and reused
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    for n in a.demos:
        for label, method, lam in variants:
            for seed in a.seeds:
                done = {
                    (r["step"], r["temperature"])
                    for r in rows
                    if (r["demos"], r["variant"], r["seed"]) == (n, label, seed)
                }
                if len(done) == len(a.steps) * (len(a.temperatures) + 1):
                    continue
                rows = [
                    r for r in rows if (r["demos"], r["variant"], r["seed"]) != (n, label, seed)
                ]
                log.write_text("".join(json.dumps(r) + "\n" for r in rows))  # drop partial rows
                vh = "_vh" if VALUE_HEAD and lam is not None else ""
                run = out / f"frontier_{method}_{lam}{vh}_{n}_{seed}"
                run_one(
                    a.task,
                    run,
                    method,
                    lam,
                    n,
                    seed,
                    max_steps=last,
                    save_steps=math.gcd(*a.steps),  # a checkpoint at every listed step
                    save_total_limit=None,
                    overwrite_output_dir=True,  # a run cut short by an interruption
                )
                for step in a.steps:
                    name = "final" if step == last else f"checkpoint-{step}"
                    res = eval_frontier(
                        a.task,
                        str(run / "checkpoints" / name),
                        a.temperatures,
                        greedy=True,
                        seed=seed,
                    )
                    for r in res["rows"]:
                        row = {"demos": n, "variant": label, "seed": seed, "step": step, **r}
                        rows.append(row)
                        with open(log, "a") as f:
                            f.write(json.dumps(row) + "\n")
    temps = [*a.temperatures, 0.0]
    print(
        "| demos | variant | step | "
        + " | ".join(f"T={t:g}" if t else "greedy" for t in temps)
        + " |  (normalised score / self-BLEU, mean over seeds)"
    )
    print("|---|---|---:|" + "---:|" * len(temps))
    mean_rows = {}
    for n in a.demos:
        for label, _, _ in variants:
            for step in a.steps:
                pts = []
                for t in temps:
                    sel = [
                        r
                        for r in rows
                        if (r["demos"], r["variant"], r["step"]) == (n, label, step)
                        and r["temperature"] == t
                    ]
                    pts.append(
                        {
                            k: float(np.mean([r[k] for r in sel]))
                            for k in ("normalised_score", "self_bleu", "temperature")
                        }
                    )
                mean_rows[(n, label, step)] = pts
                cells = " | ".join(
                    f"{p['normalised_score']:.3f} / {p['self_bleu']:.3f}" for p in pts
                )
                print(f"| {n} | {label} | {step} | {cells} |")
    print()
    for n in a.demos:
        sft_t1 = (
            {
                s: mean_rows[(n, "SFT", s)][a.temperatures.index(1.0)]["normalised_score"]
                for s in a.steps
            }
            if 1.0 in a.temperatures
            else {}
        )
        if sft_t1:
            print(
                f"demos {n}: SFT's score at T=1 by step {sft_t1}; best step "
                f"{max(sft_t1, key=sft_t1.get)}"
            )
        for label, _, _ in variants[1:]:
            for step in a.steps:
                sampled = [p for p in mean_rows[(n, label, step)] if p["temperature"] > 0]
                base = [p for p in mean_rows[(n, "SFT", step)] if p["temperature"] > 0]
                cmp = compare_frontiers(frontier_points(sampled), frontier_points(base), tol=0.02)
                print(
                    f"demos {n}, step {step}: {label} vs SFT (1 − self-BLEU, score; tol 0.02): "
                    f"{cmp.relation}"
                )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="runs/task")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--demos", type=int, nargs="+", default=[100, 2000])
    p.add_argument("--out", default="runs/bench_iqlearn_vs_sft")
    p.add_argument("--frontier", action="store_true", help="frontier comparison (see above)")
    p.add_argument("--steps", type=int, nargs="+", default=[300])
    p.add_argument("--lams", type=float, nargs="+", default=[0.01, 0.1])
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.7, 0.85, 1.0, 1.15, 1.3])
    p.add_argument("--value-head", action="store_true", help="IQLearn with its value head")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    global VALUE_HEAD
    VALUE_HEAD = a.value_head
    if a.frontier:
        return frontier(a, out)
    rows = []
    for n in a.demos:
        for label, method, lam in VARIANTS:
            for seed in a.seeds:
                r = run_one(a.task, out / f"{method}_{lam}_{n}_{seed}", method, lam, n, seed)
                row = {"demos": n, "variant": label, "seed": seed, **{k: r[k] for k in METRICS}}
                rows.append(row)
                with open(out / "results.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
    print(f"| demos | variant | {' | '.join(METRICS)} |")
    print("|---|---|" + "---:|" * len(METRICS))
    for n in a.demos:
        for label, _, _ in VARIANTS:
            sel = [r for r in rows if r["demos"] == n and r["variant"] == label]
            cells = []
            for k in METRICS:
                v = np.array([r[k] for r in sel])
                se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
                cells.append(f"{v.mean():.3f} ± {se:.3f}")
            print(f"| {n} | {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
