"""Multi-seed tables for the online stack on the synthetic benchmark.

Suites (each trains through the library's own CLI path from the `configs/synthetic` presets):

- `rl`: RLOO and PPO against the true reward r*, dense (per-token r*) and terminal (the return
  on the last token), KL to π_init with β = the task's β; normalised-score curves per step.
- `afd`: the AfD pipeline with the styled demonstrator: best-of-N gold-return curves (N up to
  64) for Init-SFT, Init-Demo, SFT-Demo, Bradley–Terry and the log-ratio rewards, then RLOO
  against the standardised Init-SFT logit (an extension).
- `ava`: an AVA-p reward model (rwt_rescale), then RLOO against its dense per-token rewards vs
  its terminal score.

    python benchmarks/online_rl.py --task runs/task --suite rl [--seeds 0 1 2] [--out runs/bench_rl]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
RL_RUNS = (
    ("RLOO, dense r*", "rloo", "dense"),
    ("RLOO, terminal r*", "rloo", "terminal"),
    ("PPO, dense r*", "ppo", "dense"),
    ("PPO, terminal r*", "ppo", "terminal"),
)
AFD_VARIANTS = ["init_sft", "init_demo", "sft_demo", "bt_pairwise"]
SFT_MODEL: str | None = None  # --sft-model: a given π_SFT (skips AfD's SFT phase)


def preset(name: str, task: str, out: Path, seed: int) -> dict:
    raw = yaml.safe_load((ROOT / "configs" / "synthetic" / f"{name}.yaml").read_text())
    text = json.dumps(raw).replace("runs/task", task)
    raw = json.loads(text)
    raw["training"].update(output_dir=str(out), seed=seed, disable_tqdm=True)
    raw["eval"] = {"synthetic_task": task, "seed": seed}
    return raw


def train(method: str, raw: dict) -> dict:
    from irlalign.methods import resolve
    from irlalign.methods import train as run

    return run(resolve(method, raw))


def curve(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["eval/normalised_score"] for r in rows if "eval/normalised_score" in r}


def mean_se(values) -> str:
    v = np.asarray(values, dtype=float)
    se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
    return f"{v.mean():.3f} ± {se:.3f}"


def suite_rl(task: str, out: Path, seeds, steps: int) -> list[dict]:
    rows = []
    for label, method, mode in RL_RUNS:
        for seed in seeds:
            run_dir = out / f"{method}_{mode}_{seed}"
            raw = preset(method, task, run_dir, seed)
            raw["method"]["reward_mode"] = mode
            raw["training"].update(max_steps=steps, eval_steps=max(1, steps // 4), save_steps=10**6)
            res = train(method, raw)["synthetic"]
            rows.append(
                {
                    "suite": "rl",
                    "run": label,
                    "seed": seed,
                    "curve": curve(run_dir),
                    **{k: res[k] for k in ("normalised_score", "kl_ref", "kl_expert", "self_bleu")},
                }
            )
    print(f"\n### RL against r* ({steps} iterations, KL coefficient = task β = 1)\n")
    print(
        "| run | normalised score | KL(π‖π_ref) | KL(π‖π*) | self-BLEU | curve (step: mean score) |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for label, _, _ in RL_RUNS:
        sel = [r for r in rows if r["run"] == label]
        steps_ = sorted(sel[0]["curve"])
        pts = ", ".join(f"{s}: {np.mean([r['curve'][s] for r in sel]):.3f}" for s in steps_)
        print(
            f"| {label} | {mean_se([r['normalised_score'] for r in sel])} | "
            f"{mean_se([r['kl_ref'] for r in sel])} | {mean_se([r['kl_expert'] for r in sel])} | "
            f"{mean_se([r['self_bleu'] for r in sel])} | {pts} |"
        )
    return rows


def suite_afd(task: str, out: Path, seeds, rl_steps: int) -> list[dict]:
    rows = []
    for seed in seeds:
        raw = preset("afd", task, out / f"afd_{seed}", seed)
        rl = "rloo" if rl_steps > 0 else "none"  # --steps 0: best-of-N only
        raw["method"].update(variants=AFD_VARIANTS, rl=rl, sft_model=SFT_MODEL)
        if rl_steps > 0:  # on top of the preset RL settings (configs/synthetic/rloo.yaml)
            raw["method"]["rl_training"].update(
                max_steps=rl_steps, eval_steps=rl_steps, save_steps=10**6
            )
        res = train("afd", raw)
        rows.append(
            {
                "suite": "afd",
                "seed": seed,
                "best_of_n": res["best_of_n"],
                "reward_models": res["reward_models"],
                "rl": (res.get("rl") or {}).get("synthetic"),
            }
        )
    curves = rows[0]["best_of_n"]["curves"]
    grid = [p["n"] for p in curves["init_sft"]]
    print("\n### AfD best-of-N: gold return (normalised score) vs N, π_SFT pool of 64 per prompt\n")
    print("| ranker | " + " | ".join(f"N={n}" for n in grid) + " |")
    print("|---|" + "---:|" * len(grid))
    for name in curves:
        cells = []
        for i in range(len(grid)):
            g = [r["best_of_n"]["curves"][name][i]["gold_return"] for r in rows]
            s = [r["best_of_n"]["curves"][name][i]["normalised_score"] for r in rows]
            cells.append(f"{mean_se(g)} ({np.mean(s):.3f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n| reward model | held-out accuracy | length-only baseline |\n|---|---:|---:|")
    for v in AFD_VARIANTS:
        acc = [r["reward_models"][v].get("heldout_accuracy", float("nan")) for r in rows]
        base = [r["reward_models"][v].get("length_baseline_accuracy", float("nan")) for r in rows]
        print(f"| {v} | {mean_se(acc)} | {mean_se(base)} |")
    summary = json.loads((Path(task) / "task.json").read_text()).get("data_summary", {})
    if "style_share" in json.dumps(summary):
        print(f"\nTask data summary (style share of the log-ratio variance): {summary}")
    rl = [r["rl"]["normalised_score"] for r in rows if r["rl"]]
    kl = [r["rl"]["kl_ref"] for r in rows if r["rl"]]
    if not rl:
        return rows
    print(
        f"\nRLOO from π_SFT against the standardised Init-SFT logit ({rl_steps} steps, KL 0.05 to "
        f"π_SFT): normalised score {mean_se(rl)}, KL(π‖π_ref) {mean_se(kl)}"
    )
    return rows


def suite_ava(task: str, out: Path, seeds, steps: int) -> list[dict]:
    rows = []
    for seed in seeds:
        rm_dir = out / f"ava_rm_{seed}"
        raw = preset("ava", task, rm_dir, seed)
        raw["method"]["rwt_rescale"] = True
        rm = train("ava", raw)
        for mode in ("dense", "terminal"):
            run_dir = out / f"rloo_ava_{mode}_{seed}"
            raw = preset("rloo", task, run_dir, seed)
            raw["method"].update(
                reward_model=rm["final_checkpoint"],
                reward_mode=mode,
                reward_norm="initial",
                kl_coef=0.05,
            )
            raw["training"].update(max_steps=steps, eval_steps=max(1, steps // 4), save_steps=10**6)
            res = train("rloo", raw)["synthetic"]
            rows.append(
                {
                    "suite": "ava",
                    "mode": mode,
                    "seed": seed,
                    "curve": curve(run_dir),
                    "rm_accuracy": rm["synthetic_rm"]["pairwise_accuracy"],
                    **{k: res[k] for k in ("normalised_score", "kl_ref", "kl_expert")},
                }
            )
    print(f"\n### RLOO against the AVA-p reward ({steps} steps, standardised, KL 0.05)\n")
    print(
        "| reward | normalised score | KL(π‖π_ref) | KL(π‖π*) | curve |\n|---|---:|---:|---:|---|"
    )
    for mode in ("dense", "terminal"):
        sel = [r for r in rows if r["mode"] == mode]
        pts = ", ".join(
            f"{s}: {np.mean([r['curve'][s] for r in sel]):.3f}" for s in sorted(sel[0]["curve"])
        )
        print(
            f"| AVA-p {mode} | {mean_se([r['normalised_score'] for r in sel])} | "
            f"{mean_se([r['kl_ref'] for r in sel])} | "
            f"{mean_se([r['kl_expert'] for r in sel])} | {pts} |"
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="runs/task")
    p.add_argument("--suite", choices=["rl", "afd", "ava"], required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200, help="RL iterations per run")
    p.add_argument("--out", default="runs/bench_online")
    p.add_argument("--afd-variants", nargs="+", default=None, help="AfD discriminators to train")
    p.add_argument("--sft-model", default=None, help="AfD: a given π_SFT (skips its SFT phase)")
    a = p.parse_args()
    global SFT_MODEL
    SFT_MODEL = a.sft_model
    if a.afd_variants:
        AFD_VARIANTS[:] = a.afd_variants
    out = Path(a.out) / a.suite
    out.mkdir(parents=True, exist_ok=True)
    suite = {"rl": suite_rl, "afd": suite_afd, "ava": suite_ava}[a.suite]
    rows = suite(a.task, out, a.seeds, a.steps)
    with open(out / "results.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r, default=str) + "\n")


if __name__ == "__main__":
    main()
