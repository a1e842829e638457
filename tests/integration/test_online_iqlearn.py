"""Online IQLearn on the tiny synthetic model: the CLI pipeline
runs and logs the policy-side terms, mix_in = 0 is the offline loss exactly, and the on-policy
samples have the expert batch's layout (EOS cut, truncation, prompts kept, train mode restored)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import raw_config
from irlalign.generation.continuations import batch_prompts, cut_at_eos, sample_continuations
from irlalign.methods import METHODS, resolve, train
from irlalign.modeling.load import load_tokenizer
from irlalign.trainers.iqlearn import IQLearnConfig
from irlalign.trainers.run import build_trainer, load_split

HORIZON = 10  # configs/synthetic/smoke.yaml


def _online_cfg(task, out, **method):
    cfg = raw_config(task, out, "iqlearn")
    cfg["method"] = {"online": True, "mix_in": 0.5, "max_new_tokens": HORIZON, **method}
    return cfg


def test_online_iqlearn_trains_through_the_cli_pipeline(smoke_task_dir, tmp_path):
    out = tmp_path / "online"
    results = train(resolve("iqlearn", _online_cfg(smoke_task_dir, out)))
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in logs if "loss" in r]
    assert len(steps) == 3
    for r in steps:
        for key in ("loss/td_policy", "loss/value_diff", "loss/td", "loss/mle", "iq/v0"):
            assert math.isfinite(r[key]), key
        assert r["loss/td_policy"] > 0
        assert 0 < r["iq/policy_length"] <= HORIZON
    before = AutoModelForCausalLM.from_pretrained(smoke_task_dir / "pi_init").state_dict()
    after = AutoModelForCausalLM.from_pretrained(results["final_checkpoint"]).state_dict()
    assert any(not torch.equal(before[n], after[n]) for n in after)


def _trainer_and_batch(task, out, method):
    cfg = raw_config(task, out, "iqlearn")
    cfg["method"] = method
    cfg = resolve("iqlearn", cfg)
    tok = load_tokenizer(cfg.model.path)
    ds, _ = load_split(cfg, METHODS[cfg.method_name], tok, cfg.data.train, "train", None)
    trainer, _ = build_trainer(cfg, METHODS[cfg.method_name], tok, ds, None)
    batch = trainer.data_collator([ds[i] for i in range(4)])
    return trainer, batch


@pytest.mark.parametrize("num_items", [None, 50])
def test_mix_in_zero_is_the_offline_loss_and_gradient(smoke_task_dir, tmp_path, num_items):
    # the online loss goes through the checkpointed chunks: compare with the same path (the
    # fused head pass agrees with it to fp32 rounding, tested on its own)
    off, batch = _trainer_and_batch(
        smoke_task_dir, tmp_path / "off", {"lam": 0.5, "fused_head": False}
    )
    on, _ = _trainer_and_batch(
        smoke_task_dir,
        tmp_path / "on",
        {"lam": 0.5, "online": True, "mix_in": 0.0, "max_new_tokens": 4, "policy_samples": 2},
    )
    losses, grads = [], []
    for trainer in (off, on):
        trainer.model.train()
        loss = trainer.compute_loss(trainer.model, batch, num_items_in_batch=num_items)
        loss.backward()
        losses.append(loss)
        grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters()})
    assert torch.equal(losses[0], losses[1])
    assert all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])
    logged = on.metric_store.drain()
    assert logged["loss/td_policy"] > 0 and "loss/value_diff" in logged
    assert "loss/td_policy" not in off.metric_store.drain()


def test_value_diff_off_is_still_logged(smoke_task_dir, tmp_path):
    method = {"online": True, "mix_in": 0.5, "value_diff": False, "max_new_tokens": 4}
    trainer, batch = _trainer_and_batch(smoke_task_dir, tmp_path / "nv", method)
    trainer.compute_loss(trainer.model, batch)
    logged = trainer.metric_store.drain()
    want = logged["iq/value_policy"] - logged["iq/value_expert"]
    assert logged["loss/value_diff"] == pytest.approx(want)


def test_samples_have_the_expert_layout(smoke_task_dir, tmp_path):
    trainer, batch = _trainer_and_batch(smoke_task_dir, tmp_path / "s", {})
    model, tok = trainer.model, trainer.processing_class
    prompts = batch_prompts(
        batch["input_ids"], batch["attention_mask"], batch["completion_mask"], 3
    )
    assert len(prompts) == 3
    for b, p in enumerate(prompts):
        n = len(p)
        assert batch["completion_mask"][b, n] == 1 and batch["completion_mask"][b, :n].sum() == 0
    model.train()
    torch.manual_seed(0)
    short = sample_continuations(
        model, prompts, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, max_new_tokens=2
    )
    long = sample_continuations(
        model, prompts, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, max_new_tokens=HORIZON
    )
    assert model.training  # dropout back on after sampling
    for s, budget in ((short, 2), (long, HORIZON)):
        for b, p in enumerate(prompts):
            am, cm = s.attention_mask[b].bool(), s.completion_mask[b].bool()
            assert s.input_ids[b, : len(p)].tolist() == p
            assert cm[: len(p)].sum() == 0 and not (cm & ~am).any()
            response = s.input_ids[b][cm].tolist()
            assert 0 < len(response) <= budget
            assert bool(s.finished[b]) == (response[-1] == tok.eos_token_id)
            assert tok.eos_token_id not in response[:-1]
            if not s.finished[b]:
                assert len(response) == budget  # truncated only at the length budget
    assert cut_at_eos([5, 2, 7, 2], 2) == ([5, 2], True)
    assert cut_at_eos([5, 0, 0], 2) == ([5, 0, 0], False)  # sampled pad ids are kept


def test_online_config_validation():
    with pytest.raises(ValueError, match="mix_in"):
        IQLearnConfig(online=True, mix_in=1.5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        IQLearnConfig(online=True, max_new_tokens=0)
    assert IQLearnConfig(online=True).mix_in == 0.1


def test_sample_every_reuses_the_policy_samples_between_refreshes(smoke_task_dir, tmp_path):
    method = {"online": True, "mix_in": 0.5, "max_new_tokens": 4, "sample_every": 3}
    trainer, batch = _trainer_and_batch(smoke_task_dir, tmp_path / "se", method)
    drawn = []
    fresh = trainer._policy_samples
    trainer._policy_samples = lambda m, b: drawn.append(fresh(m, b)) or drawn[-1]
    trainer.model.train()
    used = [trainer._current_samples(trainer.model, batch) for _ in range(7)]
    assert len(drawn) == 3  # micro-batches 1, 4 and 7 draw; the others reuse
    which = [next(i for i, d in enumerate(drawn) if d is s) for s in used]
    assert which == [0, 0, 0, 1, 1, 1, 2]
    kept = drawn[-1]
    trainer.model.eval()  # evaluation samples afresh and leaves the reused ones alone
    assert trainer._current_samples(trainer.model, batch) is not kept
    assert trainer._replay is kept and len(drawn) == 4
    with pytest.raises(ValueError, match="sample_every"):
        IQLearnConfig(sample_every=0)
