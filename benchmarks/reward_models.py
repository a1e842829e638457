"""Multi-seed tables for AVA (Cai et al. 2024, arXiv 2411.09341) on the synthetic benchmark.

Table 1, reward models on the synthetic preferences, evaluated on the held-out pairs: pairwise
accuracy against the true ordering, Spearman with the true return, and per-token reward recovery
against r* (raw, and shaped by the expert's soft value). Variants: Bradley–Terry, Preference
Transformer, AVA-p with the defaults (Eq. 11 reward weights over all response positions, summing
to 1), the same weights rescaled to average 1, the former defaults (the model's causal attention;
weights summing to 1, and averaging 1), AVA-p without reward weights, and AVA-d on the chosen
half (scored by its summed posterior mean).

Table 2, direct optimisation on the demonstrations: SFT vs AVA-d on the policy LM, decoded
normally (normalised score, self-BLEU, distinct-2, KL to π* and to π_ref).

Table 3 (`--trajectory`), AVA-d direct optimisation over a learning-rate × λ grid, scored every
100 steps: where direct optimisation improves the policy and where it damages it.

Every run trains from π_init with the `configs/synthetic/*.yaml` presets through the library's own
pipeline; only the training seed changes. Rows go to `--out/results.jsonl`.

    python benchmarks/reward_models.py --task runs/task [--seeds 0 1 2] [--out runs/bench_ava]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
RM_VARIANTS = (
    ("Bradley–Terry", "reward", {}),
    ("Preference Transformer", "preference_transformer", {}),
    ("AVA-p (defaults: attn_full, Σw=1)", "ava", {}),
    ("AVA-p attn_full, mean 1", "ava", {"rwt_rescale": True}),
    ("AVA-p attn_causal, mean 1", "ava", {"rwt": "attn_causal", "rwt_rescale": True}),
    ("AVA-p attn_causal, Σw=1", "ava", {"rwt": "attn_causal", "rwt_rescale": False}),
    ("AVA-p w/o rwt", "ava", {"rwt": "none"}),
    ("AVA-d (chosen half)", "ava", {"chosen_only": True}),
)
POLICY_VARIANTS = (
    ("SFT", "sft", {}),
    ("AVA-d direct (defaults)", "ava_d", {}),
    ("AVA-d direct attn_causal, Σw=1", "ava_d", {"rwt": "attn_causal", "rwt_rescale": False}),
    # Diagnostic, not a paper variant: the likelihood term alone (no TD/KL pressure on the LM).
    ("AVA-d direct λ=0 w/o rwt", "ava_d", {"lam": 0.0, "rwt": "none"}),
)
RM_METRICS = ("pairwise_accuracy", "spearman", "recovery_spearman_raw", "recovery_spearman_shaped")
POLICY_METRICS = ("normalised_score", "self_bleu", "distinct_2", "kl_expert", "kl_ref")
TRAJECTORY_LRS = (1e-4, 3e-4, 1e-3)
TRAJECTORY_LAMS = (0.1, 1.0)
TRAJECTORY_STEPS = (100, 200, 300)


def run_one(task: str, out: Path, preset: str, method_cfg: dict, seed: int, **training) -> dict:
    from irlalign.methods import resolve, train

    raw = yaml.safe_load((ROOT / "configs" / "synthetic" / f"{preset}.yaml").read_text())
    raw["model"]["path"] = f"{task}/pi_init"
    raw["data"]["train"] = f"{task}/{Path(raw['data']['train']).name}"
    raw["training"].update(output_dir=str(out), seed=seed, disable_tqdm=True, save_steps=10**6)
    raw["training"].update(training)
    raw["eval"] = {"synthetic_task": task, "seed": seed}
    raw["method"] = {**(raw.get("method") or {}), **method_cfg}
    method = "ava" if preset == "ava_d" else preset
    return train(resolve(method, raw))


def trajectory(task: str, out: Path, seeds: list[int]) -> None:
    """AVA-d direct optimisation, checkpoints at TRAJECTORY_STEPS scored against the oracle."""
    from irlalign.synthetic.runner import eval_policy

    rows = []
    for seed in seeds:
        for lr in TRAJECTORY_LRS:
            for lam in TRAJECTORY_LAMS:
                run = out / f"traj_lr{lr:g}_lam{lam:g}_{seed}"
                run_one(
                    task,
                    run,
                    "ava_d",
                    {"lam": lam},
                    seed,
                    learning_rate=lr,
                    save_steps=100,
                    save_total_limit=None,
                )
                for step in TRAJECTORY_STEPS:
                    ckpt = run / "checkpoints" / f"checkpoint-{step}"
                    m = eval_policy(task, str(ckpt), seed=seed)
                    row = {
                        "table": "trajectory",
                        "lr": lr,
                        "lam": lam,
                        "step": step,
                        "seed": seed,
                        **{k: m[k] for k in POLICY_METRICS},
                    }
                    rows.append(row)
                    with open(out / "results.jsonl", "a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
    print("| lr | λ | step | " + " | ".join(POLICY_METRICS) + " |")
    print("|---:|---:|---:|" + "---:|" * len(POLICY_METRICS))
    for lr in TRAJECTORY_LRS:
        for lam in TRAJECTORY_LAMS:
            for step in TRAJECTORY_STEPS:
                sel = [r for r in rows if (r["lr"], r["lam"], r["step"]) == (lr, lam, step)]
                cells = " | ".join(f"{np.mean([r[k] for r in sel]):.3f}" for k in POLICY_METRICS)
                print(f"| {lr:g} | {lam:g} | {step} | {cells} |")


def table(rows: list[dict], labels, metrics) -> None:
    print(f"| variant | {' | '.join(metrics)} |")
    print("|---|" + "---:|" * len(metrics))
    for label in labels:
        sel = [r for r in rows if r["variant"] == label]
        if not sel:
            continue
        cells = []
        for k in metrics:
            v = np.array([r[k] for r in sel], dtype=float)
            se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
            cells.append(f"{v.mean():.3f} ± {se:.3f}")
        print(f"| {label} | {' | '.join(cells)} |")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="runs/task")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/bench_ava")
    p.add_argument("--only", choices=("rm", "policy"), default=None)
    p.add_argument(
        "--match", nargs="+", default=[""], help="run only variants whose label contains one"
    )
    p.add_argument("--trajectory", action="store_true", help="the AVA-d lr × λ grid only")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.trajectory:
        return trajectory(a.task, out, a.seeds)
    rows = []
    jobs = [("policy", v) for v in POLICY_VARIANTS] + [("rm", v) for v in RM_VARIANTS]
    for kind, (label, preset, cfg) in jobs:
        if (a.only and kind != a.only) or not any(m in label for m in a.match):
            continue
        for seed in a.seeds:
            name = f"{preset}_{'_'.join(f'{k}-{v}' for k, v in cfg.items())}_{seed}"
            result = run_one(a.task, out / name, preset, cfg, seed)
            metrics = result["synthetic_rm"] if kind == "rm" else result["synthetic"]
            keys = RM_METRICS if kind == "rm" else POLICY_METRICS
            row = {"table": kind, "variant": label, "seed": seed, **{k: metrics[k] for k in keys}}
            rows.append(row)
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
    for kind, variants, keys in (
        ("rm", RM_VARIANTS, RM_METRICS),
        ("policy", POLICY_VARIANTS, POLICY_METRICS),
    ):
        table([r for r in rows if r["table"] == kind], [v[0] for v in variants], keys)
        print()


if __name__ == "__main__":
    main()
