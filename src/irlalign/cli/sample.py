"""`irlalign sample`: a few generations of a model on prompts from any accepted data file, to
read what a checkpoint writes (chat prompts get the tokenizer's template, as in training)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="run folder, checkpoint folder or LoRA adapter folder"
    )
    parser.add_argument("--prompts", required=True, help="data file or folder with prompts")
    parser.add_argument("--split", default="train")
    parser.add_argument("-n", "--num-prompts", type=int, default=4, help="prompts to sample")
    parser.add_argument("-k", "--samples", type=int, default=1, help="generations per prompt")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from irlalign.config import ModelOptions
    from irlalign.eval.checkpoints import resolve_model
    from irlalign.generation.sampling import HFSampler, SamplingConfig
    from irlalign.loops.setup import load_prompts
    from irlalign.modeling.load import load_model, load_tokenizer

    if args.num_prompts < 1 or args.samples < 1:
        raise ValueError("--num-prompts and --samples must be >= 1")
    sampling = SamplingConfig(temperature=args.temperature, max_new_tokens=args.max_new_tokens)
    path = resolve_model(args.model)
    tokenizer = load_tokenizer(path)
    prompts = load_prompts(args.prompts, args.split, tokenizer, args.num_prompts)
    model = load_model(ModelOptions(path=path)).eval()
    torch.manual_seed(args.seed)
    rollouts = HFSampler(model, tokenizer, sampling).sample(prompts, args.samples)
    for i, response in enumerate(rollouts.responses):
        prompt = prompts[i // args.samples]
        print(f"--- prompt {i // args.samples + 1}, sample {i % args.samples + 1}")
        print(f"{prompt}\n>>> {response}")
    return 0
