"""`irlalign quickstart`: the main job on the embedded default (the synthetic benchmark).

Builds the benchmark, evaluates every policy the library can currently produce against the exact
oracle, prints one comparison table and writes the run folder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from irlalign.synthetic.config import SyntheticConfig

# (row label, policy spec relative to the task folder; `oracle:` names are tabular policies)
ROWS = (
    ("π_ref (reference language)", "oracle:ref_T1"),
    ("π_init (tiny LM pretrained on π_ref)", "pi_init"),
    ("π* (exact soft-optimal expert)", "oracle:expert"),
    ("styled demonstrator", "oracle:styled"),
)
# Methods trained on the task's (styled) demonstrations, from π_init, with the same settings as
# configs/synthetic/<method>.yaml (a test keeps the two in sync).
TRAINED_ROWS = (
    ("SFT (MLE) on the demonstrations", "sft", {}),
    ("IQLearn λ=0.1 on the demonstrations", "iqlearn", {"lam": 0.1, "gamma": 1.0}),
    ("AVA-d direct optimisation on the demonstrations", "ava_d", {}),
)
# Reward models trained on the task's preferences, evaluated on the held-out pairs; the presets
# are configs/synthetic/<preset>.yaml (same test).
RM_ROWS = (
    ("Bradley–Terry", "reward", {}),
    ("Preference Transformer", "preference_transformer", {}),
    ("AVA-p (rwt_rescale)", "ava", {"rwt_rescale": True}),
)
# Online rows: the loops of configs/synthetic/rloo.yaml, shortened to 50 iterations. `rm:<row>`
# names a reward model trained above (its `rm_<row>` folder).
ONLINE_TRAINING = {
    "max_steps": 50,
    "learning_rate": 1.0e-3,
    "warmup_steps": 5,
    "max_grad_norm": 1.0,
    "logging_steps": 25,
    "save_steps": 50,
    "use_cpu": True,
}
ONLINE_ROWS = (
    ("RLOO against r*, dense (50 iterations)", "rloo", {"reward_model": "gold", "kl_coef": 1.0}),
    (
        "RLOO against AVA-p dense rewards (50 iterations)",
        "rloo",
        {"reward_model": "rm:ava", "reward_norm": "initial", "kl_coef": 0.1},
    ),
)
# AfD best-of-N over a pool of 16 π_SFT samples per prompt (π_SFT = the SFT row), each variant's
# discriminator trained for 50 steps on the first AFD_PROMPTS demonstration prompts; the
# pipeline of configs/synthetic/afd.yaml otherwise (which uses all 2,000 and N up to 64).
AFD_PROMPTS = 300
AFD_METHOD = {
    "variants": ["init_sft", "init_demo", "sft_demo", "bt_pairwise"],
    "rm_training": {
        "max_steps": 50,
        "per_device_train_batch_size": 32,
        "learning_rate": 1.0e-3,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 5,
        "use_cpu": True,
    },
    "turn_markers": [],
    "sampling": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 24},
    "bon_n": [1, 4, 16],
    "bon_prompts": 64,
}
# FRFT's three arms from π_SFT (the SFT row) with the Bradley–Terry row as the pooled RM: a
# 300-pair pool, one round, top-mean subsets of 80 + 20 pairs, 15 RLOO iterations.
FRFT_METHOD = {
    "rounds": 1,
    "k": 80,
    "k_val": 20,
    "n_random_val": 200,
    "rm_training": {"num_train_epochs": 1, "per_device_train_batch_size": 8, "learning_rate": 1e-3},
    "policy_trainer": "rloo",
    "rl_method": {"kl_coef": 0.05, "reward_norm": "initial", "k": 4, "prompts_per_step": 16},
    "rl_training": {"max_steps": 15, "learning_rate": 3.0e-4},
    "rl_prompts_per_round": 300,
    "turn_markers": [],
    "sampling": {"temperature": 0.9, "top_k": 200, "max_new_tokens": 24},
}
FRFT_POOL = 300
PRESET_METHOD = {"ava_d": "ava"}  # presets whose file name is not the method's name
PRESET_DATA = dict.fromkeys(("reward", "preference_transformer", "ava"), "preferences")
TRAINING = {
    "max_steps": 300,
    "per_device_train_batch_size": 32,
    "learning_rate": 1.0e-3,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 20,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "logging_steps": 25,
    "save_steps": 300,
    "use_cpu": True,
}
RM_COLUMNS = (
    ("pairwise acc.", "pairwise_accuracy", "{:.3f}"),
    ("Spearman", "spearman", "{:.3f}"),
    ("recovery (raw)", "recovery_spearman_raw", "{:+.3f}"),
    ("recovery (shaped)", "recovery_spearman_shaped", "{:+.3f}"),
)
COLUMNS = (
    ("gold return", "gold_return", "{:.3f}"),
    ("± se", "gold_return_se", "{:.3f}"),
    ("norm. score", "normalised_score", "{:+.3f}"),
    ("KL(π‖π_ref)", "kl_ref", "{:.3f}"),
    ("KL(π‖π*)", "kl_expert", "{:.3f}"),
    ("distinct-2", "distinct_2", "{:.3f}"),
    ("self-BLEU", "self_bleu", "{:.3f}"),
    ("entropy", "entropy", "{:.3f}"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/quickstart", help="run folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=2, help="rows trained side by side (one thread each)"
    )
    parser.add_argument("--samples", type=int, default=4, help="responses per eval prompt")
    parser.set_defaults(func=run)


def markdown_table(rows: list[tuple[str, dict]], columns=COLUMNS, first: str = "policy") -> str:
    head = f"| {first} | " + " | ".join(c[0] for c in columns) + " |"
    sep = "|---|" + "---:|" * len(columns)
    body = [
        "| " + label + " | " + " | ".join(fmt.format(m[key]) for _, key, fmt in columns) + " |"
        for label, m in rows
    ]
    return "\n".join([head, sep, *body])


def method_config(task_dir: Path, out: Path, preset: str, method_cfg: dict, seed: int) -> dict:
    """The raw `irlalign train` config of one quickstart row (`preset` as in configs/synthetic)."""
    data = PRESET_DATA.get(preset, "demos")
    return {
        "model": {"path": str(task_dir / "pi_init")},
        "data": {"train": str(task_dir / data), "max_length": 64},
        "method": dict(method_cfg),
        "training": {**TRAINING, "output_dir": str(out), "seed": seed, "disable_tqdm": True},
        "eval": {"synthetic_task": str(task_dir), "seed": seed},
    }


def train_row(task_dir: Path, out: Path, preset: str, method_cfg: dict, args) -> dict:
    """Train one row; returns `eval.json`'s results (`synthetic`, `synthetic_rm`)."""
    from irlalign.training import resolve, train

    raw = method_config(task_dir, out, preset, method_cfg, args.seed)
    raw["eval"]["samples"] = args.samples
    return train(resolve(PRESET_METHOD.get(preset, preset), raw))


def online_row(task_dir: Path, out: Path, method: str, method_cfg: dict, args) -> dict:
    """Train one online row (RL loop) from π_init; returns `eval.json`'s results."""
    from irlalign.training import resolve, train

    cfg = dict(method_cfg)
    if cfg["reward_model"].startswith("rm:"):
        cfg["reward_model"] = str(
            out.parent / f"rm_{cfg['reward_model'][3:]}" / "checkpoints" / "final"
        )
    raw = {
        "model": {"path": str(task_dir / "pi_init")},
        "data": {"train": str(task_dir / "demos")},
        "method": {**cfg, "sampling": {"max_new_tokens": 24}},
        "training": {
            **ONLINE_TRAINING,
            "output_dir": str(out),
            "seed": args.seed,
            "disable_tqdm": True,
        },
        "eval": {"synthetic_task": str(task_dir), "seed": args.seed, "samples": args.samples},
    }
    return train(resolve(method, raw))


def afd_table(task_dir: Path, out: Path, args) -> tuple[str, dict]:
    """AfD's best-of-N table: normalised score per ranker and N, one shared pool."""
    from irlalign.training import resolve, train

    raw = method_config(task_dir, out / "afd", "afd", {}, args.seed)
    raw["data"]["max_rows"] = AFD_PROMPTS
    raw["method"] = {
        **AFD_METHOD,
        "sft_model": str(out / "sft" / "checkpoints" / "final"),
        "preferences": str(task_dir / "preferences"),
    }
    raw["training"] = {"output_dir": str(out / "afd"), "seed": args.seed, "use_cpu": True}
    res = train(resolve("afd", raw))
    curves = res["best_of_n"]["curves"]
    grid = [p["n"] for p in next(iter(curves.values()))]
    head = "| ranker | " + " | ".join(f"N={n}" for n in grid) + " | held-out acc. |"
    lines = [head, "|---|" + "---:|" * (len(grid) + 1)]
    for name, points in curves.items():
        acc = res["reward_models"].get(name, {}).get("heldout_accuracy")
        cells = [f"{p['normalised_score']:+.3f}" for p in points]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {'' if acc is None else f'{acc:.3f}'} |"
        )
    return "\n".join(lines), res


def frft_table(task_dir: Path, out: Path, args) -> tuple[str, dict]:
    """FRFT and its two baselines: final normalised score and the RM's aligned accuracy."""
    from irlalign.training import resolve, train

    raw = method_config(task_dir, out / "frft", "reward", {}, args.seed)
    raw["model"]["path"] = str(out / "sft" / "checkpoints" / "final")
    raw["data"].update(max_rows=FRFT_POOL, eval=str(task_dir / "preferences"), eval_split="test")
    raw["method"] = {**FRFT_METHOD, "vanilla_rm": str(out / "rm_reward" / "checkpoints" / "final")}
    raw["training"] = {"output_dir": str(out / "frft"), "seed": args.seed, "use_cpu": True}
    raw["eval"]["samples"] = args.samples
    res = train(resolve("frft", raw))
    rounds_n = FRFT_METHOD["rounds"]
    head = " | ".join(f"norm. score after round {k + 1}" for k in range(rounds_n))
    lines = [f"| arm | {head} | RM acc. on aligned pairs |", "|---|" + "---:|" * (rounds_n + 1)]
    for arm, rounds in res["arms"].items():
        scores = [f"{r['gold']['normalised_score']:+.3f}" for r in rounds]
        accs = [r.get("rm_metrics", {}).get("refit_accuracy_aligned") for r in rounds]
        acc = " / ".join(f"{a:.3f}" for a in accs if a is not None) or "(fixed RM)"
        lines.append(f"| {arm} | " + " | ".join(scores) + f" | {acc} |")
    return "\n".join(lines), res


def _job(kind: str, name: str, method_cfg: dict, args: dict):
    """One row in a worker process (one torch thread: the rows run side by side)."""
    import torch
    import transformers
    from datasets.utils.logging import disable_progress_bar

    torch.set_num_threads(1)
    disable_progress_bar()
    # A classifier built from a causal LM reports its new score head at warning level: expected.
    transformers.logging.set_verbosity_error()
    ns = argparse.Namespace(**args)
    out = Path(ns.out)
    task_dir = out / "task"
    if kind == "trained":
        return train_row(task_dir, out / name, name, method_cfg, ns)["synthetic"]
    if kind == "rm":
        return train_row(task_dir, out / f"rm_{name}", name, method_cfg, ns)["synthetic_rm"]
    if kind == "online":
        folder = f"{name}_{method_cfg['reward_model'].replace('rm:', '')}"
        return online_row(task_dir, out / folder, name, method_cfg, ns)["synthetic"]
    if kind == "frft":
        import shutil

        shutil.rmtree(out / "frft", ignore_errors=True)  # the demo always runs its round afresh
        return frft_table(task_dir, out, ns)
    return afd_table(task_dir, out, ns)


def job_table() -> list[tuple[str, tuple, tuple[str, ...]]]:
    """(label, `_job` arguments, labels it needs first), longest jobs first so that two workers
    finish together; AfD needs SFT, FRFT needs SFT and the Bradley–Terry RM, RL against AVA-p
    rewards needs the AVA-p RM."""
    sft, bt, ava = TRAINED_ROWS[0][0], RM_ROWS[0][0], RM_ROWS[-1][0]
    jobs = {label: (("trained", p, c), ()) for label, p, c in TRAINED_ROWS}
    jobs |= {label: (("rm", p, c), ()) for label, p, c in RM_ROWS}
    for label, method, cfg in ONLINE_ROWS:
        jobs[label] = (("online", method, cfg), (ava,) if cfg["reward_model"] == "rm:ava" else ())
    jobs["afd"] = (("afd", "afd", {}), (sft,))
    jobs["frft"] = (("frft", "frft", {}), (sft, bt))
    first = [bt, sft, ava, "frft", RM_ROWS[1][0], "afd"]
    order = first + [k for k in jobs if k not in first]
    return [(label, *jobs[label]) for label in order]


def train_all(args: argparse.Namespace) -> dict[str, object]:
    """Every trained row, `args.workers` at a time, each started once the rows it needs exist."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    pending, running, done = job_table(), {}, {}
    payload = vars(args) | {"func": None}
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        while pending or running:
            for job in list(pending):
                label, call, needs = job
                if len(running) < args.workers and all(n in done for n in needs):
                    print(f"training {label} …", flush=True)
                    running[pool.submit(_job, *call, payload)] = label
                    pending.remove(job)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                done[running.pop(future)] = future.result()
    return done


def run(args: argparse.Namespace) -> int:
    from datasets.utils.logging import disable_progress_bar

    from irlalign.runs import RunFolder
    from irlalign.synthetic.build import build
    from irlalign.synthetic.runner import eval_policy, init_kl

    disable_progress_bar()
    start = time.perf_counter()
    run_dir = RunFolder(args.out)
    config = SyntheticConfig(seed=args.seed)
    run_dir.write_config({"synthetic": config.to_dict(), "samples": args.samples})
    run_dir.write_env(args.seed)
    task_dir = Path(args.out) / "task"
    print(f"building the synthetic benchmark in {task_dir} …", flush=True)
    summary = build(task_dir, config)
    rows = []
    for label, spec in ROWS:
        policy = spec if spec.startswith("oracle:") else str(task_dir / spec)
        metrics = eval_policy(task_dir, policy, args.samples, args.seed)
        run_dir.log_metrics({"row": label, **metrics})
        rows.append((label, metrics))
    trained = train_all(args)
    for label, _, _ in TRAINED_ROWS + ONLINE_ROWS:
        run_dir.log_metrics({"row": label, **trained[label]})
        rows.append((label, trained[label]))
    rm_rows = [(label, trained[label]) for label, _, _ in RM_ROWS]
    for label, metrics in rm_rows:
        run_dir.log_metrics({"reward_model": label, **metrics})
    afd_text, afd = trained["afd"]
    frft_text, frft = trained["frft"]
    kl_tok = init_kl(task_dir)
    gap = summary["expert_return"] - summary["ref_return"]
    se = rows[0][1]["gold_return_se"]
    table = markdown_table(rows) + "\n\nReward models on the held-out preference pairs:\n\n"
    table += markdown_table(rm_rows, RM_COLUMNS, "reward model")
    table += "\n\nAfD best-of-N of π_SFT samples (normalised score; N=1 is π_SFT itself):\n\n"
    table += afd_text
    table += (
        "\n\nFRFT from π_SFT (normalised score; vanilla = fixed pooled RM, random = refit on a "
    )
    table += "random subset of the same size):\n\n" + frft_text
    notes = [
        f"π_init per-token KL(π_ref‖π_init) on held-out text: {kl_tok:.4f} nats",
        f"exact R(π*) − R(π_ref) on the eval prompts: {gap:.3f} = {gap / se:.1f} standard "
        f"errors of the π_ref row ({rows[0][1]['n_samples']} samples)",
        f"wall time: {time.perf_counter() - start:.1f} s",
    ]
    text = table + "\n\n" + "\n".join("- " + n for n in notes) + "\n"
    (Path(args.out) / "table.md").write_text(text)
    run_dir.write_eval(
        {
            "rows": dict(rows),
            "reward_models": dict(rm_rows),
            "afd": afd,
            "frft": frft,
            "init_kl_per_token": kl_tok,
            "task": summary,
        }
    )
    print("\n" + text + f"\nwritten: {args.out}/table.md, eval.json, metrics.jsonl, task/")
    return 0
