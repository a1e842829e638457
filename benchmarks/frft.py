"""Multi-seed FRFT table on the synthetic benchmark, with a sweep over the refit's settings.

Per seed: SFT on the styled demonstrations (π_SFT), then `irlalign train frft` with
`configs/synthetic/frft.yaml` (the mixed-source preference pool, the three arms: FRFT top-mean
refit, vanilla fixed pooled RM, random-subset refit of the same size) once per refit setting
(`--refit` modes × `--refit-lr` × `--refit-steps`). The vanilla arm does not depend on the refit,
so it runs with the first setting only, and the later settings reuse its pooled RM.

Prints per setting: the gold normalised score per RL step for each arm (mean over seeds), the
final score; the RM's accuracy before → after each refit on the aligned validation pairs and on
V_rand (both held out from every RM's training), against the labels and the true ordering; and
the premise metric per round: the pooled and the refit RM's accuracy at ordering two samples of
the frozen policy by their true return.

    python benchmarks/frft.py --task runs/task [--seeds 0 1 2] [--out runs/bench_frft] \\
        [--refit subset upweighted] [--refit-lr 1e-4 1e-3] [--refit-steps 50 400] [--upweight 4]
    python benchmarks/frft.py --task runs/task --seeds 0 --tiny   # a seconds-scale plumbing check
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("frft", "vanilla", "random")
REFIT_ARMS = ("frft", "random")
# --tiny: every phase cut to a few steps on a small pool; checks the plumbing, measures nothing.
TINY_SFT = {"max_steps": 5, "save_steps": 5, "logging_steps": 5}
TINY_FRFT = {
    "rounds": 2,
    "k": 16,
    "k_val": 4,
    "n_random_val": 16,
    "vanilla_training": {"max_steps": 5, "per_device_train_batch_size": 8},
    "rl_prompts_per_round": 16,
}
TINY_RL = {"max_steps": 2, "eval_steps": None}


def preset(name: str, task: str, out: Path, seed: int) -> dict:
    raw = yaml.safe_load((ROOT / "configs" / "synthetic" / f"{name}.yaml").read_text())
    raw = json.loads(json.dumps(raw).replace("runs/task", task))
    raw["training"].update(output_dir=str(out), seed=seed, disable_tqdm=True)
    raw["eval"] = {"synthetic_task": task, "seed": seed}
    return raw


def run(method: str, raw: dict) -> dict:
    """Train, or reuse the results of a finished run in the same folder (a rerun of the script)."""
    from irlalign.methods import resolve, train

    done = Path(raw["training"]["output_dir"]) / "eval.json"
    if done.exists():
        return json.loads(done.read_text())
    return train(resolve(method, raw))


def curve(policy_run: Path, offset: int) -> dict[int, float]:
    path = policy_run / "metrics.jsonl"  # absent when a run logged nothing (--tiny)
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return {
        offset + r["step"]: r["eval/normalised_score"] for r in rows if "eval/normalised_score" in r
    }


def mean_se(values) -> str:
    v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
    if np.isnan(v).all():
        return "–"
    v = v[~np.isnan(v)]
    se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
    return f"{v.mean():.3f} ± {se:.3f}"


def before_after(metrics: list[dict], key: str) -> str:
    before = mean_se([x.get(f"init_{key}") for x in metrics])
    return f"{before} → {mean_se([x.get(f'refit_{key}') for x in metrics])}"


def settings(a: argparse.Namespace) -> list[dict]:
    """One dict per refit setting of the sweep; None keeps the preset's value."""
    grid = itertools.product(a.refit, a.refit_lr or [None], a.refit_steps or [None])
    return [{"refit": m, "lr": lr, "steps": s} for m, lr, s in grid]


def tag(s: dict) -> str:
    lr = "preset" if s["lr"] is None else f"{s['lr']:g}"
    steps = "default" if s["steps"] is None else str(s["steps"])
    return f"{s['refit']}_lr{lr}_steps{steps}"


def frft_config(task: str, out: Path, seed: int, sft: str, s: dict, a, vanilla) -> dict:
    raw = preset("frft", task, out, seed)
    raw["model"]["path"] = sft
    method = raw["method"]
    if a.tiny:
        method.update(TINY_FRFT)
        method["rl_training"].update(TINY_RL)
        method["rl_method"]["prompts_per_step"] = 8
        raw["data"]["max_rows"] = 64
    method["refit"] = s["refit"]
    if a.upweight is not None:
        method["upweight"] = a.upweight
    training = method.setdefault("rm_training", {})
    if s["lr"] is not None:
        training["learning_rate"] = s["lr"]
    if s["steps"] is not None:
        training["max_steps"] = s["steps"]
    if vanilla is not None:  # a later setting: the vanilla arm and pooled RM are the first's
        method["vanilla_rm"], method["arms"] = vanilla, list(REFIT_ARMS)
    return raw


def arm_row(res: dict, folder: Path, arm: str, steps: int) -> dict:
    rounds = res["arms"][arm]
    pts: dict[int, float] = {}
    for k in range(len(rounds)):
        pts.update(curve(folder / arm / f"round_{k:02d}" / "policy", k * steps))
    return {
        "curve": pts,
        "final": rounds[-1]["gold"]["normalised_score"],
        "rm": [(r.get("rm_metrics") or {}) for r in rounds],
        "premise": [(r.get("premise") or {}) for r in rounds],
    }


def one_seed(a: argparse.Namespace, out: Path, seed: int) -> dict:
    sft_raw = preset("sft", a.task, out / f"sft_{seed}", seed)
    if a.tiny:
        sft_raw["training"].update(TINY_SFT)
    sft = run("sft", sft_raw)
    row = {"seed": seed, "sft_score": sft["synthetic"]["normalised_score"], "settings": {}}
    vanilla, vanilla_arm = None, None
    for s in settings(a):
        folder = out / f"frft_{seed}_{tag(s)}"
        raw = frft_config(a.task, folder, seed, sft["final_checkpoint"], s, a, vanilla)
        res = run("frft", raw)
        steps = raw["method"]["rl_training"]["max_steps"]
        arms = {arm: arm_row(res, folder, arm, steps) for arm in res["arms"]}
        if vanilla is None:
            vanilla, vanilla_arm = res["vanilla_rm"], arms["vanilla"]
        arms.setdefault("vanilla", vanilla_arm)
        row["settings"][tag(s)] = {
            "arms": arms,
            "vanilla_rm_random": res["vanilla_rm_accuracy_random"],
        }
    return row


def print_setting(name: str, rows: list[dict]) -> None:
    print(f"\n### refit setting {name}\n")
    arms = [r["settings"][name]["arms"] for r in rows]
    steps = sorted(arms[0]["frft"]["curve"])
    print("| arm | final score | " + " | ".join(f"step {s}" for s in steps) + " |")
    print("|---|---:|" + "---:|" * len(steps))
    for arm in ARMS:
        sel = [x[arm] for x in arms]
        cells = [f"{np.mean([c['curve'].get(s, np.nan) for c in sel]):.3f}" for s in steps]
        print(f"| {arm} | {mean_se([c['final'] for c in sel])} | " + " | ".join(cells) + " |")
    print(
        "\n| arm | round | refit steps | acc. aligned (before → after) | aligned, true order "
        "| acc. V_rand | V_rand, true order |"
    )
    print("|---|---:|---:|---|---|---|---|")
    for arm in REFIT_ARMS:
        for k in range(len(arms[0][arm]["rm"])):
            m = [x[arm]["rm"][k] for x in arms]
            keys = ("accuracy_aligned", "accuracy_aligned_true")
            keys += ("accuracy_random", "accuracy_random_true")
            cells = " | ".join(before_after(m, key) for key in keys)
            print(f"| {arm} | {k} | {m[0].get('refit_steps')} | {cells} |")
    print("\nPremise metric: accuracy at ordering two samples of the frozen policy by true return")
    print("\n| arm | round | pooled RM | refit RM | pairs |")
    print("|---|---:|---|---|---:|")
    for arm in ARMS:
        for k in range(len(arms[0][arm]["premise"])):
            p = [x[arm]["premise"][k] for x in arms]
            pairs = int(np.mean([q.get("pairs", 0) for q in p]))
            vanilla, refit = (
                mean_se([q.get(key) for q in p]) for key in ("vanilla_rm", "refit_rm")
            )
            print(f"| {arm} | {k} | {vanilla} | {refit} | {pairs} |")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="runs/task")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/bench_frft")
    p.add_argument("--refit", nargs="+", default=["subset"], choices=["subset", "upweighted"])
    p.add_argument("--refit-lr", type=float, nargs="+", help="refit learning rates (sweep)")
    p.add_argument("--refit-steps", type=int, nargs="+", help="refit optimiser steps (sweep)")
    p.add_argument("--upweight", type=int, help="upweighted mode's weight (default (N − K)/K)")
    p.add_argument("--tiny", action="store_true", help="a few steps everywhere: plumbing only")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [one_seed(a, out, s) for s in a.seeds]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"\nπ_SFT normalised score: {mean_se([r['sft_score'] for r in rows])}")
    for name in rows[0]["settings"]:
        print_setting(name, rows)


if __name__ == "__main__":
    main()
