"""LoRA adapter folders as models: the `checkpoints/final` of a LoRA run holds the adapter
(what peft users expect), and every consumer that loads a model also accepts it, by loading its
base model and merging the adapter in (generation then runs at the base model's speed). A
reward model trained with LoRA is an adapter too: a sequence-classification one (`SEQ_CLS`,
its score layer saved whole beside the LoRA weights) or a causal-LM one with the run's heads
(`irl_heads.*`) beside it. A run folder stands for its final checkpoint (`checkpoint_folder`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


# A run's final checkpoints, best first: the merged model of a LoRA run loads without peft.
FINALS = ("final_merged", "final")


def is_adapter_folder(path: str | Path) -> bool:
    folder = Path(path)
    return (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file()


def run_final_checkpoint(run_dir: Path) -> Path | None:
    """The final checkpoint of a finished run folder (merged before adapter), or None."""
    for name in FINALS:
        folder = run_dir / "checkpoints" / name
        if (folder / "config.json").is_file() or is_adapter_folder(folder):
            return folder
    return None


def checkpoint_folder(path: str | Path) -> str:
    """The checkpoint a model path names: a finished run folder stands for its final checkpoint;
    anything else (a model or adapter folder, `hub:<org>/<name>`, a missing path, whose error
    the loader reports) is returned as it is."""
    text = str(path)
    if text.startswith("hub:"):
        return text
    folder = Path(text).expanduser()
    if not folder.is_dir() or (folder / "config.json").is_file() or is_adapter_folder(folder):
        return text
    final = run_final_checkpoint(folder)
    return text if final is None else str(final)


def adapter_task(adapter: str | Path) -> str | None:
    """The peft `task_type` of an adapter folder (`CAUSAL_LM`, `SEQ_CLS`, ...), if recorded."""
    config = Path(adapter) / ADAPTER_CONFIG
    try:
        return json.loads(config.read_text()).get("task_type")
    except (OSError, ValueError) as err:
        raise ValueError(f"{config}: not a readable adapter config") from err


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


def tokenizer_folder(path: str) -> str:
    """Where the tokenizer of ``path`` is: the folder itself, or an adapter's base model when
    the adapter was saved without one."""
    folder = Path(path)
    if is_adapter_folder(folder) and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        return adapter_base(folder)
    return path


def model_folder(path: str) -> str:
    """The folder holding the model's `config.json`: an adapter's base model, else ``path``."""
    return adapter_base(Path(path)) if is_adapter_folder(path) else path


def merge_adapter(model: Any, adapter: str) -> Any:
    """``model`` (the adapter's base) with the LoRA adapter folder merged into its weights."""
    try:
        from peft import PeftModel
    except ImportError as err:  # the `peft` extra is optional
        raise ImportError("a LoRA adapter folder needs peft: pip install 'irlalign[peft]'") from err
    try:
        merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    except Exception as err:  # a corrupt adapter, or one made for another base model
        from irlalign.errors import root_cause

        raise ValueError(f"{adapter}: cannot load the LoRA adapter ({root_cause(err)})") from err
    # peft loads adapters for inference (every weight frozen); the merged model is an ordinary
    # checkpoint, trainable like one loaded with `from_pretrained` (an RL policy starts here).
    return merged.requires_grad_(True)
