"""Multi-seed table: offline vs online IQLearn (λ = 0.1) on the synthetic benchmark.

For each variant and training seed, trains from π_init with the `configs/synthetic/iqlearn.yaml`
and `configs/synthetic/iqlearn_online.yaml` presets (300 steps × batch 32, the step budget of
`iqlearn_vs_sft.py`) through the library's own pipeline and evaluates with `irlalign synthetic
eval`'s metrics. Prints mean ± standard error over seeds of the normalised score, self-BLEU and
distinct-2, the last logged V(s₀) and mean implicit reward r̂ on the demonstrations, the
training wall time per step (HF's `train_runtime` / steps: no data loading or
evaluation) and the online/offline ratio of that time; writes every row to `--out/results.jsonl`.
On a shared machine that time is noisy, so the ratio is also measured as the minimum over
`--time-repeats` short interleaved runs of `--time-steps` steps per variant (no evaluation).

    python benchmarks/iqlearn_online.py --task runs/task [--seeds 0 1 2] [--out runs/bench_online]
        [--mix-in 0.5]   # the online variant's α (default: the preset's)
    python benchmarks/iqlearn_online.py --task runs/task --seeds --time-repeats 5  # timing only
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [
    ("IQLearn offline λ=0.1", "iqlearn"),
    ("IQLearn online λ=0.1", "iqlearn_online"),
]
METRICS = ("normalised_score", "self_bleu", "distinct_2", "v0", "r_hat", "s_per_step")
MIX_IN: float | None = None  # --mix-in: the online variant's α instead of the preset's
SAMPLE_EVERY = 1  # --sample-every: the online variant's fresh samples every N micro-batches


def preset_config(task: str, out: Path, preset: str, n_demos: int | None, seed: int) -> dict:
    """A preset with `iqlearn_vs_sft.run_one`'s overrides (task paths, seed, no checkpoints)."""
    raw = yaml.safe_load((ROOT / "configs" / "synthetic" / f"{preset}.yaml").read_text())
    if MIX_IN is not None and raw["method"].get("online"):
        raw["method"]["mix_in"] = MIX_IN
    if raw["method"].get("online"):
        raw["method"]["sample_every"] = SAMPLE_EVERY
    raw["model"]["path"] = f"{task}/pi_init"
    raw["data"]["train"] = f"{task}/demos"
    raw["data"]["max_rows"] = n_demos
    raw["training"].update(output_dir=str(out), seed=seed, disable_tqdm=True, save_steps=10**6)
    raw["eval"] = {"synthetic_task": task, "seed": seed}
    return raw


def run_one(task: str, out: Path, preset: str, n_demos: int | None, seed: int) -> dict:
    """Train and evaluate one preset (method `iqlearn`); metrics + wall seconds per step."""
    from irlalign.methods import resolve, train

    metrics = train(resolve("iqlearn", preset_config(task, out, preset, n_demos, seed)))
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = next(r for r in reversed(logs) if "train_runtime" in r)
    last = next(r for r in reversed(logs) if "iq/v0" in r)
    return {
        **metrics["synthetic"],
        "v0": last["iq/v0"],
        "r_hat": last["iq/r_hat"],
        "s_per_step": final["train_runtime"] / final["step"],
    }


def time_one(task: str, out: Path, preset: str, n_demos: int | None, steps: int) -> tuple:
    """Wall and process-CPU seconds per step of `steps` training steps (no loading, no eval).
    CPU time counts this process's threads only, so it is far less sensitive than wall time to
    other jobs on a shared machine."""
    from irlalign.methods import METHODS, resolve
    from irlalign.modeling.load import load_tokenizer
    from irlalign.trainers.run import build_trainer, load_split

    raw = preset_config(task, out, preset, n_demos, seed=0)
    raw["training"]["max_steps"] = steps
    cfg = resolve("iqlearn", raw)
    tok = load_tokenizer(cfg.model.path)
    ds, _ = load_split(
        cfg, METHODS[cfg.method_name], tok, cfg.data.train, cfg.data.split, cfg.data.max_rows
    )
    trainer, _ = build_trainer(cfg, METHODS[cfg.method_name], tok, ds, None)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.train()
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def mean_se(values: list[float]) -> tuple[float, float]:
    v = np.array(values)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


def print_table(rows: list[dict]) -> None:
    print("| variant | seeds | " + " | ".join(METRICS) + " |")
    print("|---|---:|" + "---:|" * len(METRICS))
    per_step = {}
    for label, _ in VARIANTS:
        sel = [r for r in rows if r["variant"] == label]
        cells = ["{:.3f} ± {:.3f}".format(*mean_se([r[k] for r in sel])) for k in METRICS]
        per_step[label] = mean_se([r["s_per_step"] for r in sel])[0]
        print(f"| {label} | {len(sel)} | {' | '.join(cells)} |")
    offline, online = (per_step[label] for label, _ in VARIANTS)
    print(f"\nwall time per step, online / offline (means above): {online / offline:.2f}×")


def time_steps(task: str, out: Path, n_demos: int | None, steps: int, repeats: int) -> None:
    """Min wall and CPU seconds per step over interleaved short runs (least contended)."""
    best = {label: [float("inf"), float("inf")] for label, _ in VARIANTS}
    for r in range(repeats):
        for label, preset in VARIANTS:
            times = time_one(task, out / f"time_{preset}_{r}", preset, n_demos, steps)
            best[label] = [min(b, t) for b, t in zip(best[label], times, strict=True)]
            print(json.dumps({"variant": label, "repeat": r, "wall_cpu_s_per_step": times}))
    (off, _), (on, _) = VARIANTS
    print(f"\n| min over {repeats} interleaved {steps}-step runs | offline | online | ratio |")
    print("|---|---:|---:|---:|")
    for i, kind in enumerate(("wall s/step", "CPU s/step")):
        t_off, t_on = best[off][i], best[on][i]
        print(f"| {kind} | {t_off:.4f} | {t_on:.4f} | {t_on / t_off:.2f}× |")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="runs/task")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--demos", type=int, default=None, help="first N demonstrations (all: None)")
    p.add_argument("--out", default="runs/bench_online")
    p.add_argument("--time-steps", type=int, default=40)
    p.add_argument("--time-repeats", type=int, default=3, help="0: no timing runs")
    p.add_argument("--mix-in", type=float, default=None, help="online α (default: the preset's)")
    p.add_argument("--sample-every", type=int, default=1, help="online: fresh samples every N")
    a = p.parse_args()
    global MIX_IN, SAMPLE_EVERY
    MIX_IN, SAMPLE_EVERY = a.mix_in, a.sample_every
    label = "IQLearn online λ=0.1"
    if a.mix_in is not None:
        label += f", mix_in={a.mix_in}"
    if a.sample_every != 1:
        label += f", sample_every={a.sample_every}"
    VARIANTS[1] = (label, "iqlearn_online")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in a.seeds:  # seed-major, so an interrupted run still has both variants per seed
        for label, preset in VARIANTS:
            r = run_one(a.task, out / f"{preset}_{a.demos}_{seed}", preset, a.demos, seed)
            row = {"variant": label, "seed": seed, **{k: r[k] for k in METRICS}}
            rows.append(row)
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    if rows:
        print_table(rows)
    if a.time_repeats:
        time_steps(a.task, out, a.demos, a.time_steps, a.time_repeats)


if __name__ == "__main__":
    main()
