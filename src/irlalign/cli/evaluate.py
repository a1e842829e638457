"""`irlalign eval rm | policy`: a reward model's pairwise accuracy on held-out preference pairs,
a policy's likelihood of held-out demonstrations."""

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
    policy = sub.add_parser(
        "policy",
        help="per-token negative log-likelihood and perplexity of held-out demonstrations",
        description="Mean negative log-likelihood per response token (what SFT's loss/mle "
        "measures) and its perplexity, of a causal LM on prompt/completion or messages rows.",
    )
    policy.add_argument("--model", required=True, help="causal LM folder")
    policy.add_argument("--data", required=True, help="demonstrations: file, folder or hub:<id>")
    policy.add_argument("--split", default="test", help="split of a dataset folder (default test)")
    policy.add_argument("--out", default=None, help="also write the JSON to this file")
    policy.add_argument("--batch-size", type=int, default=16)
    policy.add_argument("--max-length", type=int, default=1024, help="as data.max_length")
    policy.set_defaults(func=run_policy)


def run_rm(args: argparse.Namespace) -> int:
    from irlalign.eval.reward_model import evaluate_reward_model, load_pairs
    from irlalign.modeling.reward import load_reward_model

    if args.batch_size < 1:
        raise ValueError(f"--batch-size: expected a number >= 1, got {args.batch_size}")
    pairs = load_pairs(args.data, args.split)  # bad data fails before the model loads
    result = evaluate_reward_model(load_reward_model(args.model, args.batch_size), pairs)
    return _report(result, args.out)


def run_policy(args: argparse.Namespace) -> int:
    from irlalign.eval.policy import evaluate_policy

    for flag, value in (("--batch-size", args.batch_size), ("--max-length", args.max_length)):
        if value < 1:
            raise ValueError(f"{flag}: expected a number >= 1, got {value}")
    result = evaluate_policy(
        args.model, args.data, args.split, batch_size=args.batch_size, max_length=args.max_length
    )
    return _report(result, args.out)


def _report(result: dict, out: str | None) -> int:
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    return 0
