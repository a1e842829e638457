"""The run-folder contract: every run writes `config.yaml`, `env.json`, `metrics.jsonl`,
`eval.json` (and `checkpoints/`, `round_<k>/` where it has them). Reports read only these files.

Also the folder's protection: one run at a time writes a folder (`.lock`), and a run never
writes over another run's records unless told to resume or to overwrite them.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
        # processes in the run (torchrun / accelerate launch set WORLD_SIZE; 1 when run alone)
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "git_revision": git_revision(),
        "command": sys.argv,
    }


class RunFolder:
    """Creates the folder and writes the contract's files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: dict[str, Any]) -> None:
        write_atomic(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def check_rounds(self, config: dict[str, Any], rounds_glob: str) -> None:
        """For outer loops that resume from finished rounds: finished rounds of a different
        configuration would be silently reused, so that is an error (even when resuming)."""
        done = list(self.path.glob(rounds_glob))
        stored = stored_config(self.path)
        if done and stored is not None and identity(stored) != identity(config):
            raise ValueError(
                f"{self.path}: holds finished rounds ({done[0].relative_to(self.path)}) of a "
                "different configuration (config.yaml); use a new output_dir, or replace the "
                "folder with training.overwrite_output_dir: true"
            )

    def write_env(self, seed: int | None) -> None:
        write_atomic(self.path / "env.json", json.dumps(environment(seed), indent=2))

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")

    def write_eval(self, results: dict[str, Any]) -> None:
        # Written last, it marks a finished run: never half-written.
        write_atomic(self.path / "eval.json", json.dumps(results, indent=2))


def write_atomic(path: Path, text: str) -> None:
    """A kill leaves the old file or the new one, never a file cut short."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """One JSON object per line (samples, scored pools, data a phase trains on). An identical
    file is left as it is: its modification time is part of what a rerun compares to decide
    whether a phase trained on it can be reused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if not (path.is_file() and path.read_text() == text):
        path.write_text(text)
    return path


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop the `metrics.jsonl` lines logged after ``step`` (a resumed run logs them again;
    -1 drops every line, for a run that starts over)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= step]
    if len(kept) < len(lines):
        path.write_text("".join(ln + "\n" for ln in kept))


# ---- protection: which folder a run may write, and one writer at a time ---------------------

LOCK = ".lock"
# Keys that say how to start a run, not what the run is: a resumed run is the same run.
START_KEYS = ("resume_from_checkpoint", "overwrite_output_dir")
# What marks a folder as a run folder (anything else in it is not ours to delete).
RUN_ENTRIES = ("config.yaml", "env.json", "metrics.jsonl", "eval.json", "checkpoints")
HINT = (
    "resume it with training.resume_from_checkpoint: true, replace it with "
    "training.overwrite_output_dir: true, or choose another training.output_dir"
)


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """A config as `config.yaml` stores it, without the start keys: equal identities are
    the same run."""
    plain = yaml.safe_load(yaml.safe_dump(config, sort_keys=False)) or {}
    training = {k: v for k, v in (plain.get("training") or {}).items() if k not in START_KEYS}
    return {**plain, "training": training}


def stored_config(run_dir: Path) -> dict[str, Any] | None:
    """The folder's `config.yaml` (None: it has none)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return None
    try:
        stored = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        stored = None
    if not isinstance(stored, dict):
        raise ValueError(f"{path}: not a readable run configuration")
    return stored


def wants_resume(value: Any) -> bool:
    """`resume_from_checkpoint` as a yes/no: true, "latest" or a path; false/null/"" are no."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "none", "null")
    return bool(value)


def occupant(run_dir: Path, config: dict[str, Any], pipeline: bool = False) -> str | None:
    """What in ``run_dir`` belongs to another run (None: the folder is free for ``config``).
    A pipeline rerun with the same config is the same run: it resumes at its phase and round
    boundaries, so only a different config.yaml makes its folder someone else's."""
    run_dir = Path(run_dir)
    try:
        stored = stored_config(run_dir)
    except ValueError:
        return "a run whose config.yaml cannot be read"
    if stored is not None and identity(stored) != identity(config):
        return "a run of a different configuration (config.yaml)"
    if pipeline:
        return None
    if (run_dir / "eval.json").exists():
        return "a finished run (eval.json)"
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        return "a started run (checkpoints/)"
    return None


def reset(run_dir: Path) -> None:
    """Remove a run's own records (config, env, metrics, results, checkpoints) and keep any
    other file: a pipeline redoing a phase keeps the data it wrote into the phase's folder."""
    for name in RUN_ENTRIES:
        path = Path(run_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def clear(run_dir: Path) -> None:
    """Empty a run folder for `overwrite_output_dir` (its lock stays). A folder holding files
    but none of a run's is refused: a mistyped output_dir must not delete someone's data."""
    entries = [p for p in Path(run_dir).iterdir() if p.name != LOCK]
    if entries and not any((Path(run_dir) / name).exists() for name in RUN_ENTRIES):
        raise ValueError(
            f"{run_dir}: training.overwrite_output_dir: this folder holds no run (none of "
            f"{', '.join(RUN_ENTRIES)}), so it is not cleared; choose another "
            "training.output_dir"
        )
    for path in entries:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class RunLock:
    """`<run>/.lock`, created with O_EXCL and holding the writer's pid and host. A lock whose
    process is gone (a killed run) is stale and taken over; one from another host cannot be
    checked and is respected."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self.held = False
        self.created = False

    def holder(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):  # being written, or garbage: a writer was there
            return {}

    def stale(self, holder: dict[str, Any]) -> bool:
        pid = holder.get("pid")
        same_host = holder.get("host") == socket.gethostname()
        return isinstance(pid, int) and same_host and not _alive(pid)

    def acquire(self) -> None:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ValueError(f"{self.run_dir}: training.output_dir is a file, not a folder")
        self.created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if not self.stale(holder):
                    raise ValueError(self._busy(holder)) from None
                print(
                    f"irlalign: warning: taking over the stale lock {self.path} "
                    f"(pid {holder['pid']} is gone)",
                    file=sys.stderr,
                )
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)
            self.held = True
            return
        raise ValueError(self._busy(self.holder()))

    def _busy(self, holder: dict[str, Any]) -> str:
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
        return (
            f"{self.run_dir}: another run ({who}) is writing to this folder; wait for it to "
            f"end, or delete {self.path} if no run is active"
        )

    def release(self) -> None:
        if not self.held:
            return
        if self.holder().get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False
        if self.created and not any(self.run_dir.iterdir()):
            self.run_dir.rmdir()  # a run that stopped before writing anything leaves nothing


@contextmanager
def claimed(
    run_dir: str | Path, config: dict[str, Any], pipeline: bool = False, main: bool = True
) -> Iterator[None]:
    """Hold ``run_dir`` for one run of ``config``: lock it, refuse another run's folder unless
    the config resumes or overwrites it (overwrite empties it first). Only the main process of a
    distributed run takes the lock; the others write nothing of the folder's own."""
    training = config.get("training") or {}
    resume = wants_resume(training.get("resume_from_checkpoint"))
    overwrite = training.get("overwrite_output_dir", False)
    if not isinstance(overwrite, bool):
        raise ValueError("training.overwrite_output_dir must be true or false")
    if resume and overwrite:
        raise ValueError(
            "training.resume_from_checkpoint and training.overwrite_output_dir exclude each "
            "other: resume the run or replace it"
        )
    if not main:
        yield
        return
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        if overwrite:
            clear(Path(run_dir))
        elif not resume:
            taken = occupant(Path(run_dir), config, pipeline)
            if taken:
                raise ValueError(f"{run_dir}: holds {taken}; {HINT}")
        yield
    finally:
        lock.release()


# ---- phases of a pipeline: what each was computed from, so that a rerun reuses it -----------


def fingerprint(spec: str | Path | None) -> Any:
    """What identifies a local file's or folder's contents without reading them: each file's
    size and modification time (a retrained model has a new fingerprint). A Hub id, or a path
    that does not exist, is its name."""
    if spec is None:
        return None
    path = Path(spec)
    if path.is_file():
        return [path.stat().st_size, path.stat().st_mtime_ns]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return [[str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    return str(spec)


def _plain(value: Any) -> Any:
    """As JSON stores it (tuples become lists, paths strings), so stored and fresh keys compare."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


class PhaseLog:
    """`<pipeline>/phases.json`: per phase, the key it was computed from (configs and the
    fingerprints of its inputs), whether it finished, the fingerprints of its outputs and what
    it returned. A rerun reuses a phase whose key matches and whose outputs are untouched."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / "phases.json"

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):  # none yet, or cut short by a kill: nothing to reuse
            return {}

    def _write(self, name: str, entry: dict[str, Any]) -> None:
        entries = {**self._read(), name: _plain(entry)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(entries, indent=2))

    def reusable(self, name: str, key: Any, outputs=()) -> dict[str, Any] | None:
        """The finished entry of ``name`` when it matches ``key`` and ``outputs``, else None."""
        entry = self._read().get(name)
        if not entry or not entry.get("done") or entry.get("key") != _plain(key):
            return None
        return entry if entry.get("outputs") == _plain([fingerprint(o) for o in outputs]) else None

    def started(self, name: str, key: Any) -> bool:
        """``name`` began with this ``key`` and did not finish (a kill interrupted it)."""
        entry = self._read().get(name)
        return bool(entry) and not entry.get("done") and entry.get("key") == _plain(key)

    def start(self, name: str, key: Any) -> None:
        self._write(name, {"key": key, "done": False})

    def finish(self, name: str, key: Any, result: Any = None, outputs=()) -> None:
        outputs = [fingerprint(o) for o in outputs]
        self._write(name, {"key": key, "done": True, "outputs": outputs, "result": result})
