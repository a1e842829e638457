"""`irlalign rewards`: per-token rewards on prompt/response data: r_t = Q − γV' of a causal LM
(IQLearn), or a reward model's own token rewards (Bradley–Terry, Preference Transformer, AVA)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="causal LM (IQLearn; a run, checkpoint or LoRA adapter folder) or reward model",
    )
    parser.add_argument("--data", required=True, help="prompt/completion or messages data")
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", required=True, help="JSONL file to write")
    parser.add_argument("--gamma", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--max-rows", type=int, default=None)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from irlalign.eval.checkpoints import resolve_model
    from irlalign.extract import extract_to_jsonl, reward_model_to_jsonl
    from irlalign.modeling.reward import is_reward_model_folder

    args.model = resolve_model(args.model)  # a run folder stands for its final checkpoint
    if is_reward_model_folder(args.model):
        n = reward_model_to_jsonl(
            args.model,
            args.data,
            args.out,
            split=args.split,
            batch_size=args.batch_size,
            max_rows=args.max_rows,
        )
        print(f"wrote {n} rows of reward-model token rewards to {args.out}")
        return 0
    n = extract_to_jsonl(
        args.model,
        args.data,
        args.out,
        split=args.split,
        gamma=args.gamma,
        batch_size=args.batch_size,
        max_length=args.max_length,
        max_rows=args.max_rows,
    )
    print(f"wrote {n} rows of per-token rewards to {args.out}")
    return 0
