"""Is a checkpoint folder complete? Cheap structural checks that read no tensor data and
unpickle nothing, so a resume can skip a folder that a kill left half-written.

A save that was interrupted leaves an empty folder, a missing file or a file cut short. Each
format here carries its own length: a safetensors header lists every tensor's byte range, a
`torch.save` file is a zip archive whose directory is written last, and JSON must parse. A
folder passes when every such file in it is whole and the files its kind needs are present.
"""

from __future__ import annotations

import json
import struct
import sys
import zipfile
from pathlib import Path

TRAINER_STATE = "trainer_state.json"
LOOP_STATE = "loop_state.pt"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")


def safetensors_problem(path: Path) -> str | None:
    """None when the file is as long as its header says; otherwise what is wrong."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
    except (OSError, struct.error, ValueError):
        return f"{path.name} has no readable header"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    expected = 8 + size + max(ends, default=0)
    actual = path.stat().st_size
    if actual != expected:
        return f"{path.name} holds {actual} of {expected} bytes"
    return None


def torch_file_problem(path: Path) -> str | None:
    """`torch.save` writes a zip archive whose central directory comes last: a file cut short
    has none. Only the directory is read; nothing is unpickled."""
    try:
        with zipfile.ZipFile(path) as z:
            z.namelist()
    except (OSError, zipfile.BadZipFile):
        return f"{path.name} is truncated or not a torch file"
    return None


def json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return f"{path.name} is not valid JSON"
    return None


CHECKS = {
    ".safetensors": safetensors_problem,
    ".pt": torch_file_problem,
    ".pth": torch_file_problem,
    ".bin": torch_file_problem,
    ".json": json_problem,
}


def files_problem(folder: Path) -> str | None:
    """The first incomplete file of ``folder`` (its top level), or None."""
    for path in sorted(folder.iterdir()):
        check = CHECKS.get(path.suffix)
        if path.is_file() and check is not None:
            problem = check(path)
            if problem:
                return problem
    return None


def _weights_problem(folder: Path) -> str | None:
    present = [name for name in WEIGHTS if (folder / name).is_file()]
    if not present:
        return "no model weights"
    index = folder / "model.safetensors.index.json"
    if index.is_file() and json_problem(index) is None:
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            return f"shard {missing[0]} is missing"
    return None


def trainer_checkpoint_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a complete Hugging Face `checkpoint-<n>`, or None. The Trainer
    writes `trainer_state.json` after the weights, optimizer, schedule and RNG states."""
    if not folder.is_dir():
        return "not a folder"
    if not (folder / TRAINER_STATE).is_file():
        return f"no {TRAINER_STATE}"
    return files_problem(folder) or _weights_problem(folder) or _step_problem(folder)


def _step_problem(folder: Path) -> str | None:
    step = json.loads((folder / TRAINER_STATE).read_text()).get("global_step")
    return None if isinstance(step, int) else f"{TRAINER_STATE} has no global_step"


def loop_checkpoint_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a complete loop `step_<n>`, or None."""
    if not folder.is_dir():
        return "not a folder"
    if not (folder / LOOP_STATE).is_file():
        return f"no {LOOP_STATE}"
    return files_problem(folder) or _weights_problem(folder)


def trainer_step(folder: Path) -> int:
    """The optimisation step a complete `checkpoint-<n>` was saved at."""
    return int(json.loads((folder / TRAINER_STATE).read_text())["global_step"])


def newest_complete(folder: Path, prefix: str, problem_of) -> Path | None:
    """The highest-numbered `<prefix><n>` folder that ``problem_of`` finds complete; every
    newer, incomplete one is reported and skipped (it is left in place: a resumed run writes
    that step again)."""
    found = [p for p in folder.glob(f"{prefix}*") if p.name[len(prefix) :].isdigit()]
    for path in sorted(found, key=lambda p: int(p.name[len(prefix) :]), reverse=True):
        problem = problem_of(path)
        if problem is None:
            return path
        print(
            f"irlalign: warning: skipping incomplete checkpoint {path} ({problem})", file=sys.stderr
        )
    print(
        f"irlalign: warning: no complete checkpoint in {folder}; starting from step 0",
        file=sys.stderr,
    )
    return None
