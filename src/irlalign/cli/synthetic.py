"""`irlalign synthetic build | eval | eval-rm`."""

from __future__ import annotations

import argparse
import json

from irlalign.synthetic.config import SyntheticConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="synthetic_command", metavar="<action>", required=True)
    b = sub.add_parser("build", help="write datasets, task.json and the π_init checkpoint")
    b.add_argument("--out", required=True, help="task folder to write")
    b.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    b.add_argument("--config", default=None, help="YAML file of SyntheticConfig fields")
    b.set_defaults(func=run_build)
    e = sub.add_parser("eval", help="gold return, KL and diversity of a policy")
    e.add_argument("--task", required=True, help="task folder from `synthetic build`")
    e.add_argument(
        "--policy",
        required=True,
        help="causal-LM checkpoint folder, or oracle:<name> (ref_T1, expert, styled…)",
    )
    e.add_argument("--samples", type=int, default=4, help="responses per eval prompt")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=run_eval)
    r = sub.add_parser(
        "eval-rm", help="pairwise accuracy, Spearman, token-reward recovery of an RM"
    )
    r.add_argument("--task", required=True, help="task folder from `synthetic build`")
    r.add_argument("--rm", required=True, help="reward-model folder")
    r.set_defaults(func=run_eval_rm)


def load_config(path: str | None, seed: int | None) -> SyntheticConfig:
    config = SyntheticConfig.from_file(path) if path else SyntheticConfig()
    if seed is not None:
        config = SyntheticConfig.from_dict({**config.to_dict(), "seed": seed})
    return config


def run_build(args: argparse.Namespace) -> int:
    from datasets.utils.logging import disable_progress_bar

    from irlalign.synthetic.build import build

    disable_progress_bar()
    summary = build(args.out, load_config(args.config, args.seed))
    print(json.dumps(summary, indent=2))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from irlalign.synthetic.runner import eval_policy

    if args.samples < 1:
        raise ValueError("--samples must be at least 1")
    print(json.dumps(eval_policy(args.task, args.policy, args.samples, args.seed)))
    return 0


def run_eval_rm(args: argparse.Namespace) -> int:
    from irlalign.synthetic.runner import eval_reward_model

    print(json.dumps(eval_reward_model(args.task, args.rm)))
    return 0
