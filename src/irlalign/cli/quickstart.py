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
    for label, preset, method_cfg in TRAINED_ROWS:
        print(f"training {label} …", flush=True)
        metrics = train_row(task_dir, Path(args.out) / preset, preset, method_cfg, args)
        run_dir.log_metrics({"row": label, **metrics["synthetic"]})
        rows.append((label, metrics["synthetic"]))
    rm_rows = []
    for label, preset, method_cfg in RM_ROWS:
        print(f"training the {label} reward model …", flush=True)
        metrics = train_row(task_dir, Path(args.out) / f"rm_{preset}", preset, method_cfg, args)
        run_dir.log_metrics({"reward_model": label, **metrics["synthetic_rm"]})
        rm_rows.append((label, metrics["synthetic_rm"]))
    kl_tok = init_kl(task_dir)
    gap = summary["expert_return"] - summary["ref_return"]
    se = rows[0][1]["gold_return_se"]
    table = markdown_table(rows) + "\n\nReward models on the held-out preference pairs:\n\n"
    table += markdown_table(rm_rows, RM_COLUMNS, "reward model")
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
            "init_kl_per_token": kl_tok,
            "task": summary,
        }
    )
    print("\n" + text + f"\nwritten: {args.out}/table.md, eval.json, metrics.jsonl, task/")
    return 0
