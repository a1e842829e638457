"""The one place that calls `from_pretrained`: policy, reference and reward models.

Every trainer loads its models through `load_model` so that dtype, device, LoRA and
`trust_remote_code` behave the same everywhere, and a bad path fails with a clear message before
any training starts.
"""

from __future__ import annotations

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

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
KINDS = {"causal_lm": AutoModelForCausalLM, "reward": AutoModelForSequenceClassification}


def _check_path(path: str) -> None:
    """A local-looking path must exist; anything else is tried as a Hub id."""
    looks_local = path.startswith((".", "/", "~")) or Path(path).exists()
    if looks_local and not (Path(path).expanduser() / "config.json").exists():
        raise FileNotFoundError(f"{path}: no config.json; not a model folder")


def load_tokenizer(path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    _check_path(path)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:  # GPT-2 style tokenizers: pad with EOS, masks keep it harmless
        tok.pad_token = tok.eos_token
    return tok


def load_model(options: ModelOptions, kind: str = "causal_lm", **kwargs: Any) -> PreTrainedModel:
    """Load a causal LM or a scalar reward model (sequence classifier, `num_labels=1`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    _check_path(options.path)
    if kind == "reward":
        kwargs.setdefault("num_labels", 1)
    model = KINDS[kind].from_pretrained(
        options.path,
        dtype=DTYPES[options.dtype],
        trust_remote_code=options.trust_remote_code,
        **options.extra,
        **kwargs,
    )
    if kind == "reward" and model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    if options.device is not None:
        model = model.to(options.device)
    if options.lora is not None:
        model = apply_lora(model, options.lora, kind)
    return model


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
