"""Checkpoints of the online loops: `checkpoints/step_<n>/` holds the policy (a model folder, or
a LoRA adapter folder, plus any heads), the tokenizer, and `loop_state.pt` (optimizer, LR
schedule, RNG states and the loop's own counters), so that a resumed run continues exactly."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from irlalign.modeling.forward import peft_wrapper, unwrap

STATE_FILE = "loop_state.pt"


@dataclass
class LoopState:
    """What a loop must carry across a resume besides weights and optimizer."""

    step: int = 0  # completed optimisation steps
    reward_mean: float | None = None  # the "initial" reward normaliser, fixed once measured
    reward_std: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """The complete `step_<n>` folders, oldest first."""
    from irlalign.integrity import loop_checkpoint_problem

    found = [p for p in (run_dir / "checkpoints").glob("step_*") if p.name[5:].isdigit()]
    complete = (p for p in found if loop_checkpoint_problem(p) is None)
    return sorted(complete, key=lambda p: int(p.name[5:]))


@contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """Write a checkpoint into a hidden sibling and rename it into place when complete: a kill
    during the save leaves the previous checkpoints and a stray `.<name>.tmp`, never a
    half-written `<name>`. A folder of the same name (an earlier attempt) is replaced."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    old = folder.with_name(f".{folder.name}.old")
    for stray in (tmp, old):
        if stray.exists():
            shutil.rmtree(stray)
    tmp.mkdir(parents=True)
    yield tmp
    if folder.exists():
        folder.rename(old)  # a directory cannot be renamed over a non-empty one
    tmp.rename(folder)
    if old.exists():
        shutil.rmtree(old)


def save_policy(policy, folder: Path) -> None:
    """A plain `save_pretrained` folder (plus heads), or a LoRA adapter folder (plus heads)."""
    from irlalign.modeling.heads import save_heads, save_pretrained_with_heads, split_head_state

    peft = peft_wrapper(policy)
    if peft is None:
        save_pretrained_with_heads(unwrap(policy), folder)
        return
    peft.save_pretrained(folder)
    save_heads(unwrap(policy), folder, split_head_state(unwrap(policy).state_dict())[1])


def save_checkpoint(
    run_dir: Path, policy, tokenizer, optimizer, state: LoopState, keep: int | None, scheduler=None
) -> Path:
    """`checkpoints/step_<n>/`; keeps the newest ``keep`` of them."""
    folder = run_dir / "checkpoints" / f"step_{state.step}"
    with atomic_folder(folder) as tmp:
        save_policy(policy, tmp)
        tokenizer.save_pretrained(tmp)
        rng = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state_as_tensors(np.random.get_state()),
            "python": random.getstate(),
        }
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "state": state.__dict__,
                "rng": rng,
            },
            tmp / STATE_FILE,
        )
    if keep is not None:
        for old in checkpoint_dirs(run_dir)[:-keep]:
            shutil.rmtree(old)
    return folder


def load_checkpoint(folder: Path, policy, optimizer, scheduler=None) -> LoopState:
    """Weights (and heads) into ``policy``, the optimizer state, RNG state; returns the state."""
    from safetensors.torch import load_file

    from irlalign.modeling.heads import load_heads

    base, peft = unwrap(policy), peft_wrapper(policy)
    if peft is not None:  # a LoRA policy: the checkpoint holds the adapter
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(peft, load_file(str(folder / "adapter_model.safetensors")))
    else:
        base.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
    load_heads(base, folder)
    saved = read_state(folder / STATE_FILE)
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None and saved.get("scheduler") is not None:
        scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"]["torch"])
    np.random.set_state(_numpy_state_from_tensors(saved["rng"]["numpy"]))
    random.setstate(saved["rng"]["python"])
    return LoopState(**saved["state"])


def _numpy_state_as_tensors(state: tuple) -> tuple:
    """numpy's RNG state with its key array as a tensor: a file `torch.load` reads without
    unpickling any numpy object."""
    name, keys, pos, has_gauss, cached = state
    return (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), cached)


def _numpy_state_from_tensors(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    if isinstance(keys, torch.Tensor):
        keys = keys.numpy().astype(np.uint32)
    return (name, keys, pos, has_gauss, cached)


# Checkpoints written before the RNG state was stored as tensors hold numpy arrays; these are
# the only globals `read_state` lets the unpickler build (no code runs on load).
_NUMPY_ARRAY_GLOBALS = [
    np._core.multiarray._reconstruct,
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),
]


def read_state(path: Path) -> dict[str, Any]:
    """`loop_state.pt` with `weights_only=True`: tensors, numbers, strings and containers only
    (plus plain numpy arrays for older checkpoints); anything else is refused."""
    import pickle

    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAY_GLOBALS):
            return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: refused to load (not a plain loop state): {first}") from None


def resume_folder(run_dir: Path, resume: bool | str | None) -> Path | None:
    """The complete checkpoint `resume_from_checkpoint` names: true / "latest" = the newest
    complete `step_<n>` of this run (incomplete newer ones are reported and skipped); a path:
    that folder, if it is a complete loop checkpoint."""
    from irlalign.integrity import loop_checkpoint_problem, newest_complete
    from irlalign.runs import wants_resume

    if not wants_resume(resume):
        return None
    if isinstance(resume, str) and resume.strip().lower() not in ("true", "latest"):
        problem = loop_checkpoint_problem(Path(resume))
        if problem:
            raise ValueError(
                f"training.resume_from_checkpoint: {resume} is not a complete loop checkpoint "
                f"({problem})"
            )
        return Path(resume)
    return newest_complete(run_dir / "checkpoints", "step_", loop_checkpoint_problem)
