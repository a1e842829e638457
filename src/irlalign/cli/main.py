"""`irlalign <command>`: one entry point with an explicit table of commands."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable

from irlalign import __version__
from irlalign.cli import evaluate, quickstart, report, rewards, sample, synthetic, train
from irlalign.guard import NonFiniteError

# command name -> (help, add_arguments(parser) that sets `func`)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "quickstart": (
        "build the synthetic benchmark and print the comparison table",
        quickstart.add_arguments,
    ),
    "synthetic": ("build and evaluate on the synthetic benchmark", synthetic.add_arguments),
    "rewards": ("write per-token rewards r_t = Q - γV' of a model on data", rewards.add_arguments),
    "train": ("train a model with one method (see `irlalign train --help`)", train.add_arguments),
    "sample": ("print a few generations of a model on prompts", sample.add_arguments),
    "report": ("write one self-contained HTML report of run folders", report.add_arguments),
    "eval": (
        "evaluate a trained model on held-out data (`eval rm`, `eval policy`)",
        evaluate.add_arguments,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="irlalign",
        description="Align language models with inverse reinforcement learning.",
    )
    parser.add_argument("--version", action="version", version=f"irlalign {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (help_text, add) in COMMANDS.items():
        # "resolve": a command may replace -h/--help (`train METHOD --help` lists its keys).
        parser_of = sub.add_parser(
            name, help=help_text, description=help_text, conflict_handler="resolve"
        )
        add(parser_of)
    return parser


def _show_data_warnings() -> None:
    """Data warnings as one `irlalign: warning:` line each, without Python's source excerpt
    (call inside `warnings.catch_warnings()`, which restores the default)."""
    from irlalign.data.formats import DataWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DataWarning):
            print(f"irlalign: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra  # `train` takes --section.key value overrides
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            _show_data_warnings()
            return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as err:
        print(f"irlalign: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteError as err:  # training diverged: not a usage error
        print(f"irlalign: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
