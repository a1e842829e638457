"""Multi-seed FRFT table on the synthetic benchmark.

Per seed: SFT on the styled demonstrations (π_SFT), then `irlalign train frft` with
`configs/synthetic/frft.yaml` (the mixed-source preference pool, the three arms: FRFT top-mean
refit, vanilla fixed pooled RM, random-subset refit of the same size). Prints the gold
normalised score per RL step for each arm (mean over seeds), the final score, and the RM's
accuracy on policy-aligned and on random held-out pairs per round.

    python benchmarks/frft.py --task runs/task [--seeds 0 1 2] [--out runs/bench_frft]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("frft", "vanilla", "random")


def preset(name: str, task: str, out: Path, seed: int) -> dict:
    raw = yaml.safe_load((ROOT / "configs" / "synthetic" / f"{name}.yaml").read_text())
    raw = json.loads(json.dumps(raw).replace("runs/task", task))
    raw["training"].update(output_dir=str(out), seed=seed, disable_tqdm=True)
    raw["eval"] = {"synthetic_task": task, "seed": seed}
    return raw


def run(method: str, raw: dict) -> dict:
    from irlalign.methods import resolve, train

    return train(resolve(method, raw))


def curve(policy_run: Path, offset: int) -> dict[int, float]:
    rows = [json.loads(x) for x in (policy_run / "metrics.jsonl").read_text().splitlines()]
    return {
        offset + r["step"]: r["eval/normalised_score"] for r in rows if "eval/normalised_score" in r
    }


def mean_se(values) -> str:
    v = np.asarray(values, dtype=float)
    se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
    return f"{v.mean():.3f} ± {se:.3f}"


def before_after(metrics: list[dict], key: str) -> str:
    before = mean_se([x[f"init_{key}"] for x in metrics])
    return f"{before} → {mean_se([x[f'refit_{key}'] for x in metrics])}"


def one_seed(task: str, out: Path, seed: int) -> dict:
    sft = run("sft", preset("sft", task, out / f"sft_{seed}", seed))
    raw = preset("frft", task, out / f"frft_{seed}", seed)
    raw["model"]["path"] = sft["final_checkpoint"]
    res = run("frft", raw)
    steps = raw["method"]["rl_training"]["max_steps"]
    row = {"seed": seed, "sft_score": sft["synthetic"]["normalised_score"], "arms": {}}
    for arm in ARMS:
        rounds = res["arms"][arm]
        pts: dict[int, float] = {}
        for k in range(len(rounds)):
            folder = out / f"frft_{seed}" / arm / f"round_{k:02d}" / "policy"
            pts.update(curve(folder, k * steps))
        acc = [(r.get("rm_metrics") or {}) for r in rounds]
        row["arms"][arm] = {
            "curve": pts,
            "final": rounds[-1]["gold"]["normalised_score"],
            "rm": acc,
        }
    return row


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="runs/task")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/bench_frft")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [one_seed(a.task, out, s) for s in a.seeds]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"\nπ_SFT normalised score: {mean_se([r['sft_score'] for r in rows])}\n")
    steps = sorted(rows[0]["arms"]["frft"]["curve"])
    print("| arm | final score | " + " | ".join(f"step {s}" for s in steps) + " |")
    print("|---|---:|" + "---:|" * len(steps))
    for arm in ARMS:
        sel = [r["arms"][arm] for r in rows]
        cells = [f"{np.mean([c['curve'][s] for c in sel]):.3f}" for s in steps]
        print(f"| {arm} | {mean_se([c['final'] for c in sel])} | " + " | ".join(cells) + " |")
    print("\n| arm | round | RM acc. aligned (before → after) | RM acc. random (before → after) |")
    print("|---|---:|---|---|")
    for arm in ("frft", "random"):
        for k in range(len(rows[0]["arms"][arm]["rm"])):
            m = [r["arms"][arm]["rm"][k] for r in rows]
            aligned, rand = (
                before_after(m, key) for key in ("accuracy_aligned", "accuracy_random")
            )
            print(f"| {arm} | {k} | {aligned} | {rand} |")


if __name__ == "__main__":
    main()
