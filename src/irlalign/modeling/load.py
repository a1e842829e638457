"""The one place that calls `from_pretrained`: policy, reference and reward models.

Every trainer loads its models through `load_model` so that dtype, device, LoRA and
`trust_remote_code` behave the same everywhere, and a bad path fails with a clear message before
any training starts. A model path is a local folder holding `config.json`, or `hub:<org>/<name>`
for the Hugging Face Hub (`irlalign.paths`); a LoRA adapter folder loads as its base model with
the adapter merged in, and a finished run folder as its final checkpoint
(`irlalign.modeling.adapters`), for every kind of model. Whatever `from_pretrained` raises (a
corrupt safetensors file, a broken config) becomes one ValueError naming the path, and a
tokenizer whose ids do not all fit the model's embedding is refused at load time, not at the
first forward.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from irlalign.config import LoraOptions, ModelOptions
from irlalign.errors import root_cause
from irlalign.paths import hub_id, local_path, missing_message

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
KINDS = {"causal_lm": AutoModelForCausalLM, "reward": AutoModelForSequenceClassification}
# config.json keys holding the longest sequence a model takes, across architectures.
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def read_model_config(path: str) -> dict[str, Any]:
    """The parsed `config.json` of a local model folder (no transformers involved); for a LoRA
    adapter folder that of its base model, for a run folder that of its final checkpoint."""
    from irlalign.modeling.adapters import adapter_base, checkpoint_folder, is_adapter_folder

    folder = local_path(checkpoint_folder(path))
    if not folder.exists():
        raise FileNotFoundError(missing_message(path, "model folder"))
    if is_adapter_folder(folder):
        return _config_dict(adapter_base(folder))
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{path}: no config.json; not a model folder")
    try:
        value = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{config}: not a readable JSON file ({root_cause(err)})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{config}: expected a JSON object of model settings")
    return value


def model_source(path: str) -> str:
    """What `from_pretrained` gets for a model path: the id of `hub:<org>/<name>`, else the
    local folder, which must hold a readable `config.json`."""
    from irlalign.modeling.adapters import checkpoint_folder

    name = hub_id(path)
    if name is not None:
        return name
    read_model_config(path)
    return str(local_path(checkpoint_folder(path)))


def text_setting(config: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    """The first of `keys` in a config dict, or in its `text_config` (multimodal models)."""
    for node in (config, config.get("text_config") or {}):
        for key in keys:
            if isinstance(node.get(key), int):
                return node[key]
    return None


def _config_dict(path: str) -> dict[str, Any]:
    name = hub_id(path)
    if name is None:
        return read_model_config(path)
    from transformers import PretrainedConfig

    return PretrainedConfig.get_config_dict(name)[0]


def check_vocabulary(tokenizer: PreTrainedTokenizerBase, path: str) -> None:
    """Every token id must index a row of the model's embedding; a mismatched tokenizer would
    otherwise fail with an IndexError at the first forward pass."""
    rows = text_setting(_config_dict(path), ("vocab_size",))
    if rows is None:
        return
    ids = max(len(tokenizer), max(tokenizer.get_vocab().values(), default=-1) + 1)
    if ids > rows:
        raise ValueError(
            f"{path}: the tokenizer has token ids up to {ids - 1}, but the model's embedding "
            f"has {rows} rows (vocab_size in config.json); the tokenizer does not belong to "
            "this model"
        )


def load_tokenizer(path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    from irlalign.modeling.adapters import (
        checkpoint_folder,
        is_adapter_folder,
        model_folder,
        tokenizer_folder,
    )

    path = checkpoint_folder(path)  # a run folder: its final checkpoint's tokenizer
    folder = tokenizer_folder(path)  # a LoRA adapter saved with its tokenizer: that folder
    source = str(local_path(folder)) if is_adapter_folder(folder) else model_source(folder)
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as err:  # tokenizer files: JSON, sentencepiece, missing files, offline
        raise ValueError(f"{path}: cannot load the tokenizer ({root_cause(err)})") from err
    check_vocabulary(tok, model_folder(path))
    if tok.pad_token is None:  # GPT-2 style tokenizers: pad with EOS, masks keep it harmless
        tok.pad_token = tok.eos_token
    return tok


def load_model(options: ModelOptions, kind: str = "causal_lm", **kwargs: Any) -> PreTrainedModel:
    """Load a causal LM or a scalar reward model (sequence classifier, `num_labels=1`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    from irlalign.modeling.adapters import checkpoint_folder, is_adapter_folder

    options = dataclasses.replace(options, path=checkpoint_folder(options.path))
    if is_adapter_folder(options.path):  # a LoRA run's `final/`
        return _load_adapter(options, kind, **kwargs)
    source = model_source(options.path)
    if kind == "reward":
        kwargs.setdefault("num_labels", 1)
    try:
        model = KINDS[kind].from_pretrained(
            source,
            dtype=DTYPES[options.dtype],
            trust_remote_code=options.trust_remote_code,
            **options.extra,
            **kwargs,
        )
    except Exception as err:  # corrupt weights, unknown architecture, bad `extra` keywords
        raise ValueError(f"{options.path}: cannot load the model ({root_cause(err)})") from err
    if kind == "reward" and model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    if options.device is not None:
        model = model.to(options.device)
    if options.lora is not None:
        model = apply_lora(model, options.lora, kind)
    return model


def _load_adapter(options: ModelOptions, kind: str, **kwargs: Any) -> PreTrainedModel:
    """A LoRA adapter folder: its base model loaded as ``kind``, the adapter merged in, and a
    new adapter on top when ``options.lora`` asks for one. A sequence-classification adapter
    carries a score layer that a causal LM has not; a causal-LM adapter may start a reward
    model (its LoRA weights merge into the classifier's backbone)."""
    from irlalign.modeling.adapters import adapter_base, adapter_task, merge_adapter

    if kind != "reward" and adapter_task(options.path) == "SEQ_CLS":
        raise ValueError(
            f"{options.path}: a reward-model (sequence-classification) LoRA adapter, where a "
            "causal LM is needed"
        )
    base = dataclasses.replace(options, path=adapter_base(Path(options.path)), lora=None)
    with _quiet_load_report():  # "score.weight MISSING": the adapter brings the trained one
        model = load_model(base, kind, **kwargs)
    model = merge_adapter(model, options.path)
    return apply_lora(model, options.lora, kind) if options.lora is not None else model


@contextmanager
def _quiet_load_report() -> Iterator[None]:
    """transformers' warnings (its load report among them) off for one `from_pretrained`."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def apply_lora(model: PreTrainedModel, lora: LoraOptions, kind: str = "causal_lm"):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:  # the `peft` extra is optional
        raise ImportError("LoRA needs peft: pip install 'irlalign[peft]'") from err
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        modules_to_save=lora.modules_to_save,
        task_type="SEQ_CLS" if kind == "reward" else "CAUSAL_LM",
    )
    return get_peft_model(model, config)


def frozen_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A reference model: same weights, eval mode, no gradients."""
    import copy

    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref
