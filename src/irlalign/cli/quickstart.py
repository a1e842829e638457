"""`irlalign quickstart`: the main job on the embedded default (the synthetic benchmark).

Builds the benchmark, evaluates every policy the library can currently produce against the exact
oracle, prints one comparison table and writes the run folder (see `irlalign.demo`).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/quickstart", help="run folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=2, help="rows trained side by side (one thread each)"
    )
    parser.add_argument("--samples", type=int, default=4, help="responses per eval prompt")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from irlalign.demo.quickstart import run_quickstart

    text = run_quickstart(args.out, args.seed, args.workers, args.samples)
    written = "table.md, report.html, eval.json, metrics.jsonl, task/"
    print("\n" + text + f"\nwritten: {args.out}/{written}")
    return 0
