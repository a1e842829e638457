"""The single model loader: folders, dtypes, reward heads, LoRA, clear errors."""

from __future__ import annotations

import pytest
import torch

from irlalign.modeling.load import (
    LoraOptions,
    ModelOptions,
    frozen_copy,
    load_model,
    load_tokenizer,
)


def test_load_policy_and_reward_from_folder(smoke_task_dir):
    path = str(smoke_task_dir / "pi_init")
    policy = load_model(ModelOptions(path))
    assert policy.dtype == torch.float32
    rm = load_model(ModelOptions(path), kind="reward")
    assert rm.config.num_labels == 1 and rm.config.pad_token_id is not None
    tok = load_tokenizer(path)
    ids = tok(["<bos> food big <sep> dog <eos>"], add_special_tokens=False, return_tensors="pt")
    assert rm(**ids).logits.shape == (1, 1)
    ref = frozen_copy(policy)
    assert not any(p.requires_grad for p in ref.parameters())
    assert any(p.requires_grad for p in policy.parameters())


def test_lora_trains_only_adapters(smoke_task_dir):
    opts = ModelOptions(
        str(smoke_task_dir / "pi_init"),
        lora=LoraOptions(r=4, alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    model = load_model(opts)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_bad_inputs_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(ModelOptions(str(tmp_path)))
    with pytest.raises(ValueError, match="dtype must be one of"):
        ModelOptions("x", dtype="float8")
