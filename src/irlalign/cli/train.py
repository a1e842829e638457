"""`irlalign train <method> [--config FILE] [--model_name_or_path M] [--dataset_name D]
[--output_dir O] [--section.key value ...]`.

Without `--config` the run is built from the flags alone, TRL-style; with it the flags override
the preset. `irlalign train <method> --help` lists every key of that method's config.
"""

from __future__ import annotations

import argparse
import json

from irlalign.api import read_config
from irlalign.methods import METHODS  # the table imports no torch: `--help` stays fast

# TRL-style flags and the config key each sets.
SHORTCUTS = {
    "model_name_or_path": "model.path",
    "dataset_name": "data.train",
    "output_dir": "training.output_dir",
}
FLAG_FOR = {
    "model.path": "--model_name_or_path",
    "data.train": "--dataset_name",
    "training.output_dir": "--output_dir",
}

__all__ = ["add_arguments", "method_help", "read_config", "run"]


class MethodHelp(argparse.Action):
    """`--help`; after a method name (`irlalign train iqlearn --help`) also that method's keys."""

    def __init__(
        self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None
    ):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        method = getattr(namespace, "method_name", None)
        if method:
            print("\n" + method_help(method))
        parser.exit()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = sorted(METHODS)
    # Replaces argparse's own -h/--help (the parser resolves conflicts) with one that knows
    # the method.
    parser.add_argument(
        "-h", "--help", action=MethodHelp, help="show this help (after a method: its keys)"
    )
    parser.add_argument("method_name", choices=names, metavar="method", help=", ".join(names))
    parser.add_argument("--config", help="YAML preset (see configs/); optional")
    parser.add_argument(
        "--model_name_or_path", help="model.path: a model folder or hub:<org>/<name>"
    )
    parser.add_argument(
        "--dataset_name",
        "--train",
        help="data.train: a .jsonl/.json/.csv/.parquet file, data folder or hub:<org>/<name>",
    )
    parser.add_argument("--output_dir", help="training.output_dir: the run folder")
    parser.epilog = (
        "Any further --section.key value pairs set (or override) one key, values read as YAML, "
        "e.g. --training.max_steps 10 --method.lam 0.3. `irlalign train METHOD --help` lists "
        "the method's keys."
    )
    parser.set_defaults(func=run)


def method_help(method: str) -> str:
    """Every key of ``method``'s config by section: flag, default and one line of help."""
    from irlalign.api import options

    lines = [f"keys of `irlalign train {method}` (set with --section.key value):"]
    for section, docs in options(method).items():
        lines.append(f"\n{section}:")
        flags = [f"--{section}.{d.name}" for d in docs]
        width = min(max(len(f) for f in flags), 40)
        dwidth = min(max(len(d.default) for d in docs), 24)
        for flag, doc in zip(flags, docs, strict=True):
            lines.append(f"  {flag:<{width}}  {doc.default:<{dwidth}}  {doc.help}".rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from irlalign.config import apply_overrides
    from irlalign.methods import resolve, train

    raw = read_config(args.config) if args.config else {}
    overrides = [*_shortcut_overrides(args), *_split_equals(args.overrides)]
    try:
        _check_flags(args.method_name, overrides)
        raw = apply_overrides(raw, overrides)
        cfg = resolve(args.method_name, raw)
    except (TypeError, ValueError) as err:
        message = _with_flag(str(err))
        raise ValueError(f"{args.config}: {message}" if args.config else message) from err
    results = train(cfg)
    print(json.dumps(results, indent=2, default=str))
    return 0


def _shortcut_overrides(args: argparse.Namespace) -> list[str]:
    """The TRL-style flags as `--section.key value` pairs (applied before the others, so an
    explicit `--training.output_dir` wins)."""
    out = []
    for name, key in SHORTCUTS.items():
        value = getattr(args, name, None)
        if value is not None:
            out += [f"--{key}", json.dumps(value)]  # a JSON string is a YAML string
    return out


def _split_equals(tokens: list[str]) -> list[str]:
    """`--section.key=value` as the pair `--section.key value`."""
    out = []
    for token in tokens:
        if token.startswith("--") and "=" in token:
            out += token.split("=", 1)
        else:
            out.append(token)
    return out


def _check_flags(method: str, overrides: list[str]) -> None:
    """A flag without a section (`--max_steps 10`): say which `--section.key` it is."""
    from irlalign.api import sections_with

    for flag in overrides[::2]:
        if flag.startswith("--") and "." not in flag:
            key = flag[2:]
            homes = [f"--{s}.{key}" for s in sections_with(method, key)]
            hint = f"did you mean {' or '.join(homes)}?" if homes else "keys are --section.key"
            raise ValueError(f"unknown option {flag}; {hint} (`irlalign train {method} --help`)")


def _with_flag(message: str) -> str:
    """A missing required key also names the flag that sets it."""
    for key, flag in FLAG_FOR.items():
        if message.startswith(key) and "required" in message:
            return f"{message} (set it with {flag} or --{key})"
    return message
