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


def read_config(path: str) -> dict:
    """The YAML mapping in `path`; an unreadable file or invalid YAML is one located error."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read the config file ({err})") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
    if raw is None:
        raise ValueError(f"{path}: the config file is empty")
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of config sections, got {type(raw).__name__}")
    return raw


def _yaml_problem(err) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def run(args: argparse.Namespace) -> int:
    from irlalign.config import apply_overrides
    from irlalign.methods import resolve, train

    raw = read_config(args.config)
    try:
        cfg = resolve(args.method_name, apply_overrides(raw, args.overrides))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{args.config}: {err}") from err
    results = train(cfg)
    print(json.dumps(results, indent=2, default=str))
    return 0
