"""`irlalign train <method> --config FILE [--section.key value ...]`."""

from __future__ import annotations

import argparse
import json

from irlalign.methods import METHODS  # the table imports no torch: `--help` stays fast


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = sorted(METHODS)
    parser.add_argument("method_name", choices=names, metavar="method", help=", ".join(names))
    parser.add_argument("--config", required=True, help="YAML preset (see configs/)")
    parser.epilog = (
        "Any further --section.key value pairs override the preset, e.g. --method.lam 0.3"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from irlalign.config import apply_overrides
    from irlalign.methods import resolve, train

    with open(args.config) as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{args.config}: expected a mapping of config sections")
    try:
        cfg = resolve(args.method_name, apply_overrides(raw, args.overrides))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{args.config}: {err}") from err
    results = train(cfg)
    print(json.dumps(results, indent=2, default=str))
    return 0
