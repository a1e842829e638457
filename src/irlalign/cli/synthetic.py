"""`irlalign synthetic build | eval | eval-rm | frontier`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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
    e.add_argument(
        "--temperatures",
        type=_temperatures,
        default=None,
        help="comma-separated sampling temperatures, e.g. 0.7,0.85,1.0,1.15,1.3: one row each "
        "(a quality–diversity frontier, printed as a table); default: one JSON object at T = 1",
    )
    e.add_argument(
        "--greedy", action="store_true", help="add a greedy-decoding row to the frontier"
    )
    e.add_argument("--out", default=None, help="also write the result as JSON to this file")
    e.set_defaults(func=run_eval)
    r = sub.add_parser(
        "eval-rm", help="pairwise accuracy, Spearman, token-reward recovery of an RM"
    )
    r.add_argument("--task", required=True, help="task folder from `synthetic build`")
    r.add_argument(
        "--rm",
        required=True,
        help="reward-model folder, gail:<folder>, implicit:<ckpt>[,<ref>] or log_ratio:<pol>,<ref>",
    )
    r.set_defaults(func=run_eval_rm)
    f = sub.add_parser("frontier", help="does one quality–diversity frontier dominate another?")
    f.add_argument(
        "--runs", nargs=2, required=True, metavar=("A", "B"), help="two `eval --out` JSON files"
    )
    f.add_argument(
        "--diversity",
        choices=["self_bleu", "entropy", "distinct_2"],
        default="self_bleu",
        help="diversity axis (self_bleu enters as 1 − self-BLEU); default self_bleu",
    )
    f.add_argument(
        "--quality", default="normalised_score", help="quality key; default normalised_score"
    )
    f.add_argument(
        "--tol", type=float, default=0.0, help="quality margin for Monte-Carlo noise (default 0)"
    )
    f.set_defaults(func=run_frontier)


def _temperatures(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {text!r}"
        ) from err
    if not values or any(not t > 0 for t in values):
        raise argparse.ArgumentTypeError(
            f"temperatures must be > 0 (use --greedy for greedy decoding), got {text!r}"
        )
    return values


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
    from irlalign.synthetic.runner import eval_frontier, eval_policy

    if args.samples < 1:
        raise ValueError("--samples must be at least 1")
    if args.temperatures is None and not args.greedy:
        result = eval_policy(args.task, args.policy, args.samples, args.seed)
        print(json.dumps(result))
    else:
        result = eval_frontier(
            args.task, args.policy, args.temperatures or [], args.greedy, args.samples, args.seed
        )
        print(format_frontier(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


FRONTIER_COLUMNS = (
    ("norm. score", "normalised_score", "+.3f"),
    ("± se", "normalised_score_se", ".3f"),
    ("gold return", "gold_return", ".3f"),
    ("self-BLEU", "self_bleu", ".3f"),
    ("distinct-2", "distinct_2", ".3f"),
    ("entropy", "entropy", ".3f"),
    ("KL(π_T‖π*)", "kl_expert", ".3f"),
)


def format_frontier(result: dict) -> str:
    """The frontier rows of `eval_frontier` as a Markdown table, with a note on greedy rows."""
    head = ["decoding", *(name for name, _, _ in FRONTIER_COLUMNS)]
    lines = [
        f"policy {result['policy']}, {result['samples']} samples per prompt, seed {result['seed']}",
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * len(FRONTIER_COLUMNS),
    ]
    for row in result["rows"]:
        name = "greedy" if row["decoding"] == "greedy" else f"T = {row['temperature']:g}"
        cells = [_cell(row.get(key), spec) for _, key, spec in FRONTIER_COLUMNS]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    if any(row["decoding"] == "greedy" for row in result["rows"]):
        lines += [
            "",
            "greedy: KL(π_T‖π*) is not reported (null in the JSON): greedy decoding is a point "
            "mass, whose KL to π* reduces to −log π*(y) of one response per prompt.",
        ]
    return "\n".join(lines)


def _cell(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def run_frontier(args: argparse.Namespace) -> int:
    from irlalign.eval.frontier import compare_frontiers, frontier_points

    names, points = [], []
    for label, path in zip("AB", args.runs, strict=True):
        run = json.loads(Path(path).read_text())
        if "rows" not in run:
            raise ValueError(f"{path}: no frontier rows (write it with `eval --temperatures`)")
        pts = frontier_points(run["rows"], args.diversity, args.quality)
        if not pts:
            raise ValueError(f"{path}: no row has finite {args.diversity} and {args.quality}")
        names.append(f"{label} = {run.get('policy', path)} ({path})")
        points.append(pts)
    result = compare_frontiers(points[0], points[1], tol=args.tol)
    axis = "1 − self-BLEU" if args.diversity == "self_bleu" else args.diversity
    print(*names, sep="\n")
    print(f"diversity = {axis}, quality = {args.quality}, tol = {args.tol:g}")
    for label, pts in zip("AB", points, strict=True):
        print(f"{label}: " + ", ".join(f"({d:.3f}, {q:+.3f})" for d, q in sorted(pts)))
    print(f"verdict: {result.relation}")
    for label, unreached in (("A", result.a_unreached), ("B", result.b_unreached)):
        if unreached:
            other = "B" if label == "A" else "A"
            listed = ", ".join(f"({d:.3f}, {q:+.3f})" for d, q in unreached)
            print(f"points of {label} that {other} does not reach: {listed}")
    if result.crossings:
        listed = ", ".join(f"({d:.3f}, {q:+.3f})" for d, q in result.crossings)
        print(f"the curves cross at (diversity, quality): {listed}")
    elif result.relation == "crossing":
        (a_max, b_max) = (max(d for d, _ in pts) for pts in points)
        print(
            "the curves do not cross where both are defined; neither dominates because they "
            f"end at different diversities (A at {a_max:.3f}, B at {b_max:.3f})"
        )
    return 0


def run_eval_rm(args: argparse.Namespace) -> int:
    from irlalign.synthetic.runner import eval_reward_model

    print(json.dumps(eval_reward_model(args.task, args.rm)))
    return 0
