"""IQLearn's value-head ablation end to end: the head trains, sits
beside an ordinary checkpoint folder, survives a resume and is used by reward extraction."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM

from conftest import raw_config
from irlalign.extract import extract_to_jsonl, extract_token_rewards
from irlalign.methods import resolve, train
from irlalign.modeling.heads import HEADS_CONFIG, get_head, load_heads


def _value_cfg(task, out, **training):
    cfg = raw_config(task, out, "iqlearn", **training)
    cfg["method"] = {"value_head": True, "lam": 1.0}
    return cfg


def test_value_head_trains_saves_and_is_used_for_rewards(smoke_task_dir, tmp_path):
    out = tmp_path / "vh"
    results = train(resolve("iqlearn", _value_cfg(smoke_task_dir, out)))
    final = results["final_checkpoint"]
    hidden = AutoModelForCausalLM.from_pretrained(final).config.hidden_size
    assert json.loads((tmp_path / "vh/checkpoints/final" / HEADS_CONFIG).read_text()) == {
        "value": {"kind": "scalar", "hidden_size": hidden}
    }
    # The model folder alone is an ordinary causal LM: no head keys inside it.
    model, info = AutoModelForCausalLM.from_pretrained(final, output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"]
    assert get_head(model, "value") is None
    assert load_heads(model, final) == ["value"]
    head = get_head(model, "value")
    assert head.linear.weight.abs().sum() > 0  # zero-initialised, so it was trained

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "<bos> food big <sep>", "completion": "dog cat <eos>"}\n')
    extract_to_jsonl(final, str(rows), tmp_path / "r.jsonl")
    row = json.loads((tmp_path / "r.jsonl").read_text())
    assert abs(row["v0"]) > 0
    # v0 is V_φ(s_0), not logsumexp: compare with the plain-LM extraction of the same folder.
    plain = AutoModelForCausalLM.from_pretrained(final)
    ids = torch.tensor([[1] * 3 + [5, 6, 2]])
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "completion_mask": torch.tensor([[0, 0, 0, 1, 1, 1]]),
    }
    with_head = extract_token_rewards(model, batch, eos_id=2)
    without = extract_token_rewards(plain, batch, eos_id=2)
    assert torch.equal(with_head.per_token_logps, without.per_token_logps)
    assert not torch.allclose(with_head.v0, without.v0)


def test_value_head_resumes_from_checkpoint(smoke_task_dir, tmp_path):
    """2 steps + resume for 1 equals 3 uninterrupted steps, head included (constant lr)."""
    const = {"lr_scheduler_type": "constant"}
    straight = train(resolve("iqlearn", _value_cfg(smoke_task_dir, tmp_path / "a", **const)))
    out = tmp_path / "b"
    train(resolve("iqlearn", _value_cfg(smoke_task_dir, out, max_steps=2, **const)))
    assert (out / "checkpoints" / "checkpoint-2" / HEADS_CONFIG).exists()
    cfg = _value_cfg(smoke_task_dir, out, max_steps=3, resume_from_checkpoint=True, **const)
    resumed = train(resolve("iqlearn", cfg))
    logs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if "loss" in r] == [1, 2, 3]
    heads = []
    for results in (straight, resumed):
        model = AutoModelForCausalLM.from_pretrained(results["final_checkpoint"])
        load_heads(model, results["final_checkpoint"])
        heads.append(get_head(model, "value").linear.weight.detach())
    assert heads[0].abs().sum() > 0
    assert torch.allclose(heads[0], heads[1], atol=1e-6)


def test_value_head_with_lora_trains_and_merges(smoke_task_dir, tmp_path):
    cfg = _value_cfg(smoke_task_dir, tmp_path / "lora")
    cfg["model"]["lora"] = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    results = train(resolve("iqlearn", cfg))
    for folder in (results["final_checkpoint"], results["merged_checkpoint"]):
        model = AutoModelForCausalLM.from_pretrained(results["merged_checkpoint"])
        assert load_heads(model, folder) == ["value"], folder
        assert get_head(model, "value").linear.weight.abs().sum() > 0
