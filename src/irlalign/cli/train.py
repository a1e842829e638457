"""`irlalign train <method> --config FILE [--section.key value ...]`."""

from __future__ import annotations

import argparse
import json

# The table lives in irlalign.training.METHODS; listed here too so that `--help` needs no torch
# import (a test keeps the two equal).
METHOD_NAMES = (
    "adversarial",
    "afd",
    "ava",
    "dpo",
    "frft",
    "iqlearn",
    "ppo",
    "preference_transformer",
    "reward",
    "rloo",
    "sft",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", choices=METHOD_NAMES, help="training method")
    parser.add_argument("--config", required=True, help="YAML preset (see configs/)")
    parser.epilog = (
        "Any further --section.key value pairs override the preset, e.g. --method.lam 0.3"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from irlalign.training import apply_overrides, resolve, train

    with open(args.config) as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{args.config}: expected a mapping of config sections")
    try:
        cfg = resolve(args.method, apply_overrides(raw, args.overrides))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{args.config}: {err}") from err
    results = train(cfg)
    print(json.dumps(results, indent=2, default=str))
    return 0
