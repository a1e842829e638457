"""`irlalign eval rm`: a reward model's pairwise accuracy on held-out preference pairs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_command", metavar="<what>", required=True)
    rm = sub.add_parser(
        "rm",
        help="pairwise accuracy, mean margin and (AVA) accuracy by σ of a reward model",
        description="Score every (prompt, chosen, rejected) pair of a preference file with a "
        "reward model; print accuracy (chosen scored higher, ties count 0.5), mean margin, "
        "number of pairs and, for a model with a posterior σ (AVA), accuracy per σ quartile.",
    )
    rm.add_argument("--model", required=True, help="reward-model folder (BT, PT or AVA)")
    rm.add_argument("--data", required=True, help="preference file, dataset folder or hub:<id>")
    rm.add_argument("--split", default="test", help="split of a dataset folder (default test)")
    rm.add_argument("--out", default=None, help="also write the JSON to this file")
    rm.add_argument("--batch-size", type=int, default=64)
    rm.set_defaults(func=run_rm)


def run_rm(args: argparse.Namespace) -> int:
    from irlalign.eval.reward_model import evaluate_reward_model, load_pairs
    from irlalign.modeling.reward import load_reward_model

    if args.batch_size < 1:
        raise ValueError(f"--batch-size: expected a number >= 1, got {args.batch_size}")
    pairs = load_pairs(args.data, args.split)  # bad data fails before the model loads
    result = evaluate_reward_model(load_reward_model(args.model, args.batch_size), pairs)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0
