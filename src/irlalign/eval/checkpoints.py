"""Which model a `--model` / `--baseline` names, and loading it as a policy.

Three kinds of folder are accepted: a checkpoint folder (`config.json`), a LoRA adapter folder
(`adapter_config.json`: the `checkpoints/final` of a LoRA run), and a run folder, which stands
for its final checkpoint (the merged one of a LoRA run, a plain checkpoint every consumer
loads). `hub:<org>/<name>` passes through.
"""

from __future__ import annotations

from typing import Any

from irlalign.modeling.adapters import (
    ADAPTER_CONFIG,
    adapter_base,
    is_adapter_folder,
    run_final_checkpoint,
)
from irlalign.paths import hub_id, local_path, missing_message

__all__ = [
    "adapter_base",
    "is_adapter_folder",
    "load_policy",
    "load_policy_model",
    "policy_tokenizer",
    "resolve_model",
    "run_final_checkpoint",
]

# A run's final checkpoints, best first: the merged model of a LoRA run loads without peft.


def resolve_model(spec: str, flag: str = "--model") -> str:
    """The checkpoint or adapter folder (or `hub:` id) that ``spec`` names; errors name
    ``flag``. Nothing is loaded."""
    if hub_id(spec) is not None:
        return spec
    folder = local_path(spec)
    if not folder.exists():
        raise FileNotFoundError(f"{flag}: {missing_message(spec, 'model or run folder')}")
    if (folder / "config.json").is_file() or is_adapter_folder(folder):
        return str(folder)
    final = run_final_checkpoint(folder)
    if final is None:
        raise FileNotFoundError(
            f"{flag}: {spec}: neither a checkpoint folder (config.json), a LoRA adapter folder "
            f"({ADAPTER_CONFIG}) nor a finished run folder (checkpoints/final)"
        )
    return str(final)


def policy_tokenizer(path: str):
    """The tokenizer of a checkpoint or LoRA adapter folder."""
    from irlalign.modeling.load import load_tokenizer

    return load_tokenizer(path)


def load_policy_model(path: str, device: str | None = None):
    """The causal LM of a checkpoint folder or a LoRA adapter folder, in eval mode."""
    from irlalign.config import ModelOptions
    from irlalign.modeling.load import load_model

    return load_model(ModelOptions(path=path, device=device)).eval()


def load_policy(path: str, device: str | None = None) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) of a checkpoint or LoRA adapter folder."""
    return load_policy_model(path, device), policy_tokenizer(path)
