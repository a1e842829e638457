"""From demonstrations to a policy, route by route, on the synthetic benchmark: SFT alone, then
RL from π_SFT (KL to π_SFT) against each dense reward `irlalign train demo_rl` can learn from
the same demonstrations — IQLearn's implicit reward (`implicit`), AfD's Init-SFT discriminator
(`init_sft`), log π_SFT − log π_init (`log_ratio`) — and, as the reference baseline, against a
Bradley–Terry reward model trained on the task's preferences (`irlalign train reward`, then RLOO
with the same RL settings).

Per route: the final normalised score, gap_closed (the RL loop's (J(π) − J(π_SFT)) /
(J* − J(π_SFT)), so 0 for SFT alone), KL(π‖π_ref) and the wall / CPU seconds of the route's own
phases with their evaluations (each demo_rl route evaluates π_SFT once more, the Bradley–Terry
route its RM on the held-out pairs), mean ± se over seeds. π_SFT is trained once per seed, or
given with --sft-model, and its time is the SFT row's. Every run is a preset of
configs/synthetic (demo_rl.yaml, sft.yaml, reward.yaml, rloo.yaml), one torch thread by default:

    python benchmarks/demo_routes.py --task runs/task --seeds 0,1,2 [--sft-model PATH] \
        [--rl-steps 100] [--routes sft,implicit,init_sft,log_ratio,bt] [--out runs/bench_demo]

`--smoke` shrinks every phase to 2 steps on 16 rows (a check that the script runs, not a
measurement). Results: a Markdown table on stdout and `<out>/results.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from online_rl import mean_se, preset, train  # noqa: E402

ROUTES = {
    "sft": "SFT alone",
    "implicit": "SFT → RL against IQLearn's implicit reward",
    "init_sft": "SFT → RL against AfD's Init-SFT discriminator",
    "log_ratio": "SFT → RL against log π_SFT − log π_init",
    "bt": "SFT → RL against a Bradley–Terry RM on preferences (baseline)",
}
KEYS = ("normalised_score", "gap_closed", "kl_ref")
SMOKE_STEPS = {"max_steps": 2, "per_device_train_batch_size": 8, "save_steps": 2}


def timed(fn, *args):
    """(fn(*args), wall seconds, CPU seconds of this process, every thread included)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def fresh(raw: dict, smoke: bool) -> dict:
    """A rerun of the benchmark measures again rather than reusing the last one's runs."""
    raw["training"]["overwrite_output_dir"] = True
    if smoke:
        raw["data"]["max_rows"] = 16
        raw["eval"]["samples"] = 1
    return raw


def train_sft(task: str, out: Path, seed: int, a) -> str:
    """π_SFT with demo_rl's SFT settings (those of configs/synthetic/afd.yaml)."""
    raw = fresh(preset("sft", task, out / f"sft_{seed}", seed), a.smoke)
    demo = preset("demo_rl", task, out, seed)["method"]
    raw["training"].update(demo["sft_training"])
    if a.smoke:
        raw["training"].update(SMOKE_STEPS)
    return train("sft", raw)["final_checkpoint"]


def sft_row(task: str, sft: str, seed: int, cost: tuple[float, float], smoke: bool) -> dict:
    """π_SFT's gold numbers under the evaluation every route's final policy gets."""
    from irlalign.config import EvalOptions
    from irlalign.synthetic.runner import eval_policy

    res = eval_policy(task, sft, 1 if smoke else EvalOptions().samples, seed)
    return {
        **{k: res[k] for k in KEYS if k in res},
        "gap_closed": 0.0,
        "wall_s": cost[0],
        "cpu_s": cost[1],
    }


def demo_route(task: str, out: Path, seed: int, sft: str, reward: str, a) -> dict:
    raw = fresh(preset("demo_rl", task, out / f"{reward}_{seed}", seed), a.smoke)
    method = raw["method"]
    method.update(reward=reward, sft_model=sft)
    method["rl_training"]["max_steps"] = a.rl_steps
    if a.kl_coef is not None:
        method["rl_method"]["kl_coef"] = a.kl_coef
    if a.smoke:
        method["reward_training"].update(SMOKE_STEPS)
        method["rl_method"].update(k=2, prompts_per_step=2)
    res, wall, cpu = timed(train, "demo_rl", raw)
    final = res["summary"]["final"]
    return {
        **{k: final[k] for k in KEYS},
        "wall_s": wall,
        "cpu_s": cpu,
        "reward": res["reward_model"],
    }


def bt_route(task: str, out: Path, seed: int, sft: str, a) -> dict:
    """`irlalign train reward` on the preferences, then RLOO from π_SFT against it with the RL
    settings of demo_rl's RL phase (KL to π_SFT, standardised reward)."""

    def run() -> tuple[dict, dict]:
        rm_raw = fresh(preset("reward", task, out / f"bt_rm_{seed}", seed), a.smoke)
        if a.smoke:
            rm_raw["training"].update(SMOKE_STEPS)
        rm = train("reward", rm_raw)
        demo = preset("demo_rl", task, out, seed)["method"]
        raw = fresh(preset("rloo", task, out / f"bt_rl_{seed}", seed), a.smoke)
        raw["model"]["path"] = sft
        raw["method"].update(demo["rl_method"], reward_model=rm["final_checkpoint"])
        if a.kl_coef is not None:
            raw["method"]["kl_coef"] = a.kl_coef
        raw["method"]["reward_mode"] = "dense"  # the RM's score sits on the last token
        raw["training"].pop("lr_scheduler_kwargs", None)  # demo_rl's RL phase has no decay
        raw["training"].update(demo["rl_training"], max_steps=a.rl_steps, eval_steps=None)
        if a.smoke:
            raw["method"].update(k=2, prompts_per_step=2)
        return rm, train("rloo", raw)

    (rm, rl), wall, cpu = timed(run)
    final = rl["synthetic"]
    rm_acc = (rm.get("synthetic_rm") or {}).get("pairwise_accuracy")
    return {**{k: final[k] for k in KEYS}, "wall_s": wall, "cpu_s": cpu, "rm_accuracy": rm_acc}


def run_seed(a, out: Path, seed: int, routes: list[str]) -> dict[str, dict]:
    if a.sft_model:
        sft, cost = a.sft_model, (0.0, 0.0)  # given: trained once, outside this benchmark
    else:
        sft, *cost = timed(train_sft, a.task, out, seed, a)
    rows = {}
    for route in routes:
        if route == "sft":
            rows[route] = sft_row(a.task, sft, seed, tuple(cost), a.smoke)
        elif route == "bt":
            rows[route] = bt_route(a.task, out, seed, sft, a)
        else:
            rows[route] = demo_route(a.task, out, seed, sft, route, a)
        print(json.dumps({"seed": seed, "route": route, **rows[route]}, default=str))
    return rows


def table(runs: dict[int, dict[str, dict]], routes: list[str], sft_given: bool) -> str:
    lines = [
        "| route | normalised score | gap_closed | KL(π‖π_ref) | wall s | CPU s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for route in routes:
        rows = [r[route] for r in runs.values()]
        cells = [mean_se([r[k] for r in rows]) for k in (*KEYS, "wall_s", "cpu_s")]
        if route == "sft" and sft_given:
            cells[3:] = ["(given)", "(given)"]
        lines.append(f"| {ROUTES[route]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="runs/task")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated, e.g. 0,1,2")
    p.add_argument("--sft-model", default=None, help="a given π_SFT, shared by every seed")
    p.add_argument("--routes", default=",".join(ROUTES), help=f"comma-separated of {list(ROUTES)}")
    p.add_argument("--rl-steps", type=int, default=100, help="RL iterations per route")
    p.add_argument("--out", default="runs/bench_demo_routes")
    p.add_argument(
        "--kl-coef", type=float, default=None, help="RL's KL coefficient to π_SFT (default: preset)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--smoke", action="store_true", help="2 steps per phase on 16 rows")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    if a.smoke:
        a.rl_steps = 2
    routes = [r.strip() for r in a.routes.split(",") if r.strip()]
    unknown = [r for r in routes if r not in ROUTES]
    if unknown:
        p.error(f"--routes: unknown {unknown}; choose from {list(ROUTES)}")
    import torch

    import irlalign.loops.rloo  # noqa: F401  (imported before the clocks start: no route pays it)
    import irlalign.pipelines.demo_rl  # noqa: F401
    import irlalign.trainers.iqlearn  # noqa: F401
    import irlalign.trainers.reward  # noqa: F401
    import irlalign.trainers.sft  # noqa: F401

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {seed: run_seed(a, out, seed, routes) for seed in seeds}
    (out / "results.json").write_text(
        json.dumps({"settings": vars(a), "runs": runs}, indent=2, default=str)
    )
    steps = "2 (smoke)" if a.smoke else a.rl_steps
    print(f"\n### Demonstrations → policy, route by route ({steps} RL iterations, seeds {seeds})\n")
    print(table(runs, routes, bool(a.sft_model)))
    print(f"\nwritten: {out / 'results.json'}")


if __name__ == "__main__":
    main()
