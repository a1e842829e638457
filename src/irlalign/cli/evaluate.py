"""`irlalign eval rm | policy`: a reward model's pairwise accuracy on held-out preference pairs;
a policy's judged responses to held-out prompts, or its likelihood of held-out demonstrations."""

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
    rm.add_argument(
        "--model", required=True, help="reward-model folder (BT, PT or AVA), or its run folder"
    )
    rm.add_argument("--data", required=True, help="preference file, dataset folder or hub:<id>")
    rm.add_argument("--split", default="test", help="split of a dataset folder (default test)")
    rm.add_argument("--out", default=None, help="also write the JSON to this file")
    rm.add_argument("--batch-size", type=int, default=64)
    rm.set_defaults(func=run_rm)
    policy = sub.add_parser(
        "policy",
        help="a policy's responses judged (win rate against a baseline), or its held-out NLL",
        description=POLICY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    policy.add_argument(
        "--model", required=True, help="run folder (its final checkpoint), checkpoint folder "
        "or LoRA adapter folder",
    )  # fmt: skip
    source = policy.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", help="judged mode: prompts (any data format), file/folder")
    source.add_argument("--data", help="NLL mode: demonstrations, file, folder or hub:<id>")
    policy.add_argument("--split", default="test", help="split of a dataset folder (default test)")
    policy.add_argument(
        "--out", default=None, help="judged mode: folder for summary.json and samples.jsonl, or "
        "a .json file (default ./eval_policy); NLL mode: also write the JSON to this file",
    )  # fmt: skip
    policy.add_argument("--batch-size", type=int, default=16, help="prompts (NLL: rows) per pass")
    policy.add_argument("--max-length", type=int, default=1024, help="NLL mode: data.max_length")
    judged = policy.add_argument_group("judged mode (--prompts)")
    judged.add_argument(
        "--judge", default=None, help="a reward_model value: reward-model or run folder, gold, "
        "gail:<folder>, implicit:<ckpt>[,<ref>], log_ratio:<policy>,<ref>",
    )  # fmt: skip
    judged.add_argument("--baseline", default=None, help="run, checkpoint or adapter folder")
    judged.add_argument(
        "--task", default=None, help="synthetic task folder (default: the folder holding "
        "--prompts, if it is a task); sample as `synthetic eval` does",
    )  # fmt: skip
    judged.add_argument("--samples", type=int, default=4, help="responses per prompt")
    judged.add_argument("--temperature", type=float, default=1.0)
    judged.add_argument("--max-new-tokens", type=int, default=128)
    judged.add_argument("--seed", type=int, default=0, help="sampling and bootstrap seed")
    judged.add_argument("-n", "--num-prompts", type=int, default=None, help="first N prompts")
    judged.add_argument(
        "--stop", action="append", default=[], metavar="TEXT",
        help="end a response after TEXT (repeatable; e.g. a turn marker)",
    )  # fmt: skip
    policy.set_defaults(func=run_policy)


POLICY_DESCRIPTION = """\
Judged mode (--prompts): sample --samples responses per held-out prompt from the policy (and
from --baseline), score each with --judge, and report the mean judge score ± SE over prompts,
the win rate against the baseline (same prompt and sample index; ties count 0.5) with a
bootstrap 95% interval over prompts, mean response length, distinct-1/2, self-BLEU and mean
token entropy. Writes summary.json and samples.jsonl and prints the summary. Chat prompts get
the model's chat template, as in RL sampling. On a synthetic task the benchmark's sampler is
used, so --judge gold reproduces `irlalign synthetic eval` for the same --samples and --seed.

NLL mode (--data): mean negative log-likelihood per response token (what SFT's loss/mle
measures) and its perplexity on prompt/completion or messages rows."""


def run_rm(args: argparse.Namespace) -> int:
    from irlalign.eval.inputs import final_if_run
    from irlalign.eval.reward_model import evaluate_reward_model, load_pairs
    from irlalign.modeling.reward import load_reward_model

    if args.batch_size < 1:
        raise ValueError(f"--batch-size: expected a number >= 1, got {args.batch_size}")
    pairs = load_pairs(args.data, args.split)  # bad data fails before the model loads
    model = load_reward_model(final_if_run(args.model), args.batch_size)
    result = evaluate_reward_model(model, pairs)
    return _report(result, args.out)


def run_policy(args: argparse.Namespace) -> int:
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # reading a .jsonl file draws one per file, even in a log
    if args.prompts is None:
        return _run_nll(args)
    return _run_judged(args)


def _run_nll(args: argparse.Namespace) -> int:
    from irlalign.eval.policy import evaluate_policy

    judged = ("--judge", "--baseline", "--task")
    given = [f for f in judged if getattr(args, f[2:]) is not None]
    if given:
        raise ValueError(f"{given[0]} belongs to the judged mode: give --prompts, not --data")
    for flag, value in (("--batch-size", args.batch_size), ("--max-length", args.max_length)):
        if value < 1:
            raise ValueError(f"{flag}: expected a number >= 1, got {value}")
    result = evaluate_policy(
        args.model, args.data, args.split, batch_size=args.batch_size, max_length=args.max_length
    )
    return _report(result, args.out)


def _run_judged(args: argparse.Namespace) -> int:
    from irlalign.eval.inputs import check_inputs
    from irlalign.eval.judged import JudgedOptions, evaluate_judged, write_results

    counts = [("--samples", args.samples), ("--max-new-tokens", args.max_new_tokens)]
    counts += [("--batch-size", args.batch_size), ("--num-prompts", args.num_prompts)]
    for flag, value in counts:
        if value is not None and value < 1:
            raise ValueError(f"{flag}: expected a number >= 1, got {value}")
    if not args.temperature > 0:
        raise ValueError(f"--temperature: expected a number > 0, got {args.temperature}")
    opts = JudgedOptions(
        samples=args.samples,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        max_prompts=args.num_prompts,
        batch_size=args.batch_size,
        stop_strings=tuple(args.stop),
    )
    # Paths, prompt rows and the judge are checked before any model loads.
    inputs = check_inputs(
        args.model, args.prompts, args.split, judge=args.judge, baseline=args.baseline,
        task=args.task,
    )  # fmt: skip
    summary, rows = evaluate_judged(inputs, opts)
    summary_path, samples_path = write_results(args.out or "eval_policy", summary, rows)
    print(json.dumps(summary, indent=2))
    print(f"wrote {summary_path} and {samples_path} ({len(rows)} responses)")
    return 0


def _report(result: dict, out: str | None) -> int:
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    return 0
