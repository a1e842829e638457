"""The run-folder contract: every run writes `config.yaml`, `env.json`, `metrics.jsonl`,
`eval.json` (and `checkpoints/`, `round_<k>/` where it has them). Reports read only these files.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

PACKAGES = ("irlalign", "torch", "transformers", "accelerate", "datasets", "peft", "trl")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment(seed: int | None) -> dict[str, Any]:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "seed": seed,
        "device": device,
        "cuda_devices": torch.cuda.device_count(),
        "torch_threads": torch.get_num_threads(),
        "git_revision": git_revision(),
        "command": sys.argv,
    }


class RunFolder:
    """Creates the folder and writes the contract's files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: dict[str, Any]) -> None:
        (self.path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def write_round_config(self, config: dict[str, Any], rounds_glob: str) -> None:
        """`write_config` for outer loops that resume from finished rounds: finished rounds of a
        different configuration would be silently reused, so that is an error."""
        path = self.path / "config.yaml"
        done = list(self.path.glob(rounds_glob))
        if (
            done
            and path.exists()
            and yaml.safe_load(path.read_text())
            != yaml.safe_load(yaml.safe_dump(config, sort_keys=False))
        ):
            raise ValueError(
                f"{self.path}: holds finished rounds ({done[0].relative_to(self.path)}) of a "
                "different configuration (config.yaml); use a new output_dir or remove the folder"
            )
        self.write_config(config)

    def write_env(self, seed: int | None) -> None:
        (self.path / "env.json").write_text(json.dumps(environment(seed), indent=2))

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")

    def write_eval(self, results: dict[str, Any]) -> None:
        (self.path / "eval.json").write_text(json.dumps(results, indent=2))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """One JSON object per line (samples, scored pools, data a phase trains on)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
