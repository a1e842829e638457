"""Which model a `--model` / `--baseline` names, and loading it as a policy.

Three kinds of folder are accepted: a checkpoint folder (`config.json`), a LoRA adapter folder
(`adapter_config.json`: the `checkpoints/final` of a LoRA run), and a run folder, which stands
for its final checkpoint (the merged one of a LoRA run, a plain checkpoint every consumer
loads). `hub:<org>/<name>` passes through.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from irlalign.paths import hub_id, local_path, missing_message

ADAPTER_CONFIG = "adapter_config.json"
# A run's final checkpoints, best first: the merged model of a LoRA run loads without peft.
FINALS = ("final_merged", "final")


def is_adapter_folder(path: str | Path) -> bool:
    folder = Path(path)
    return (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file()


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


def run_final_checkpoint(run_dir: Path) -> Path | None:
    """The final checkpoint of a finished run folder, or None."""
    for name in FINALS:
        folder = run_dir / "checkpoints" / name
        if (folder / "config.json").is_file() or is_adapter_folder(folder):
            return folder
    return None


def adapter_base(adapter: Path) -> str:
    """The base model of a LoRA adapter folder: the folder its `adapter_config.json` names when
    that still exists, else the `model.path` of the run it belongs to (a run moved to another
    place or machine), else that name as a Hub model."""
    try:
        base = json.loads((adapter / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    except (OSError, ValueError) as err:
        raise ValueError(f"{adapter / ADAPTER_CONFIG}: not a readable adapter config") from err
    if base and Path(base).expanduser().is_dir():
        return str(base)
    run_path = _run_model_path(adapter)
    if run_path is not None:
        return run_path
    if not base:
        raise ValueError(f"{adapter / ADAPTER_CONFIG}: names no base model")
    return f"hub:{base}"


def _run_model_path(adapter: Path) -> str | None:
    """`model.path` of the run whose `checkpoints/` holds ``adapter``, if it still exists."""
    import yaml

    if adapter.parent.name != "checkpoints":
        return None
    config = adapter.parent.parent / "config.yaml"
    if not config.is_file():
        return None
    path = ((yaml.safe_load(config.read_text()) or {}).get("model") or {}).get("path")
    return str(path) if path and Path(path).expanduser().is_dir() else None


def policy_tokenizer(path: str):
    """The tokenizer of a checkpoint folder, or of a LoRA adapter's base model (the run saved the
    tokenizer it trained with, which is the base model's)."""
    from irlalign.modeling.load import load_tokenizer

    return load_tokenizer(adapter_base(Path(path)) if is_adapter_folder(path) else path)


def load_policy_model(path: str, device: str | None = None):
    """The causal LM of a checkpoint folder or a LoRA adapter folder, in eval mode (an adapter
    is merged into its base: generation then runs at the base model's speed)."""
    from irlalign.config import ModelOptions
    from irlalign.modeling.load import load_model

    if not is_adapter_folder(path):
        return load_model(ModelOptions(path=path, device=device)).eval()
    base = adapter_base(Path(path))
    try:
        from peft import PeftModel
    except ImportError as err:  # the `peft` extra is optional
        raise ImportError("a LoRA adapter folder needs peft: pip install 'irlalign[peft]'") from err
    model = load_model(ModelOptions(path=base, device=device))
    try:
        model = PeftModel.from_pretrained(model, path).merge_and_unload()
    except Exception as err:  # a corrupt adapter, or one made for another base model
        from irlalign.errors import root_cause

        raise ValueError(
            f"{path}: cannot load the LoRA adapter onto {base} ({root_cause(err)})"
        ) from err
    return model.eval()


def load_policy(path: str, device: str | None = None) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) of a checkpoint or LoRA adapter folder."""
    return load_policy_model(path, device), policy_tokenizer(path)
