"""Multi-seed tables for AVA (Cai et al. 2024, arXiv 2411.09341) on the synthetic benchmark.

Table 1, reward models on the synthetic preferences, evaluated on the held-out pairs: pairwise
accuracy against the true ordering, Spearman with the true return, and per-token reward recovery
against r* (raw, and shaped by the expert's soft value). Variants: Bradley–Terry, Preference
Transformer, AVA-p with the defaults (reward weights over all response positions, averaging 1),
AVA-p with the former defaults (the model's causal attention; weights summing to 1, and
averaging 1), AVA-p without reward weights, and AVA-d on the chosen half (scored by its summed
posterior mean).

Table 2, direct optimisation on the demonstrations: SFT vs AVA-d on the policy LM, decoded
normally (normalised score, self-BLEU, distinct-2).

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
    ("AVA-p (defaults: attn_full, mean 1)", "ava", {}),
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
POLICY_METRICS = ("normalised_score", "self_bleu", "distinct_2", "kl_expert")


def run_one(task: str, out: Path, preset: str, method_cfg: dict, seed: int) -> dict:
    from irlalign.methods import resolve, train

    raw = yaml.safe_load((ROOT / "configs" / "synthetic" / f"{preset}.yaml").read_text())
    raw["model"]["path"] = f"{task}/pi_init"
    raw["data"]["train"] = f"{task}/{Path(raw['data']['train']).name}"
    raw["training"].update(output_dir=str(out), seed=seed, disable_tqdm=True, save_steps=10**6)
    raw["eval"] = {"synthetic_task": task, "seed": seed}
    raw["method"] = {**(raw.get("method") or {}), **method_cfg}
    method = "ava" if preset == "ava_d" else preset
    return train(resolve(method, raw))


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
    p.add_argument("--match", default="", help="run only variants whose label contains this")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    jobs = [("policy", v) for v in POLICY_VARIANTS] + [("rm", v) for v in RM_VARIANTS]
    for kind, (label, preset, cfg) in jobs:
        if (a.only and kind != a.only) or a.match not in label:
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
