"""Adversarial AfD rounds on the synthetic benchmark: per round, the discriminator's held-out
accuracy, whether the RL step ran (it is skipped while the discriminator is near chance,
`min_disc_accuracy`), and the policy's normalised score and KL to π_SFT after the round.

Starts from a given π_SFT (the quickstart's SFT checkpoint by default), trains with the
`configs/synthetic/adversarial.yaml` preset, one torch thread, seeds in sequence:

    python benchmarks/adversarial_rounds.py --task runs/quickstart/task \
        --sft runs/quickstart/sft/checkpoints/final [--seeds 0 1 2] [--out runs/bench_adv]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from online_rl import mean_se, preset, train  # noqa: E402


def run_seed(task: str, sft: str, out: Path, seed: int) -> list[dict]:
    raw = preset("adversarial", task, out / f"adv_{seed}", seed)
    raw["model"]["path"] = sft
    return train("adversarial", raw)["rounds"]


def start_score(task: str, sft: str, seed: int) -> float:
    """π_SFT's normalised score under the same evaluation (the rounds' starting point)."""
    from irlalign.synthetic.runner import eval_policy

    return eval_policy(task, sft, seed=seed)["normalised_score"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="runs/quickstart/task")
    p.add_argument("--sft", default="runs/quickstart/sft/checkpoints/final")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/bench_adversarial")
    a = p.parse_args()
    import torch

    torch.set_num_threads(1)
    out = Path(a.out)
    runs = {seed: run_seed(a.task, a.sft, out, seed) for seed in a.seeds}
    (out / "results.json").write_text(json.dumps(runs, indent=2, default=str))
    starts = {seed: start_score(a.task, a.sft, seed) for seed in a.seeds}
    print(f"\nπ_SFT normalised score: {mean_se(list(starts.values()))}\n")
    print("| round | disc. held-out accuracy | RL ran (seeds) | normalised score | KL(π‖π_SFT) |")
    print("|---:|---:|---:|---:|---:|")
    for k in range(len(runs[a.seeds[0]])):
        rows = [runs[s][k] for s in a.seeds]
        ran = sum(not r["rl_skipped"] for r in rows)
        # A skipped round keeps its input policy: carry the last measured score forward (π_SFT's
        # when no round has trained yet).
        scores, kls = [], []
        for s in a.seeds:
            last = next(
                (r["synthetic"] for r in reversed(runs[s][: k + 1]) if r["synthetic"]), None
            )
            scores.append(last["normalised_score"] if last else starts[s])
            kls.append(last["kl_ref"] if last else 0.0)
        acc = mean_se([r["heldout_accuracy"] for r in rows])
        print(f"| {k} | {acc} | {ran}/{len(rows)} | {mean_se(scores)} | {mean_se(kls)} |")


if __name__ == "__main__":
    main()
