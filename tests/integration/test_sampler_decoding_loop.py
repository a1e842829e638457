"""The library's decoding loop against `model.generate`: the same tokens for the same seed (the
loop feeds the model the same inputs and draws with the same softmax and multinomial, and its
shrinking batch leaves each row's draw unchanged), the log-probabilities of the sampled tokens
under the distribution they were drawn from, and `generate` itself for models it does not
cover."""

from __future__ import annotations

import pytest
import torch
from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
)

from irlalign.generation import sampling
from irlalign.generation.continuations import collate_samples, cut_at_eos, sample_continuations
from irlalign.generation.sampling import decoding_loop_supported, sample_tokens


@pytest.fixture(scope="module")
def policy(smoke_task_dir):
    folder = smoke_task_dir / "pi_init"
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(
        folder
    )


def _batch(task, tok, n=6):
    prompts = list(load_from_disk(str(task / "eval_prompts"))["prompt"][:n])
    side, tok.padding_side = tok.padding_side, "left"
    enc = tok(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
    tok.padding_side = side
    return enc["input_ids"], enc["attention_mask"]


@pytest.mark.parametrize(
    "warpers",
    [[], [TemperatureLogitsWarper(0.7)], [TemperatureLogitsWarper(1.3), TopKLogitsWarper(5)]],
)
def test_same_tokens_as_generate_for_the_same_seed(policy, smoke_task_dir, warpers, monkeypatch):
    model, tok = policy
    ids, mask = _batch(smoke_task_dir, tok)
    assert decoding_loop_supported(model)
    shrinks = []
    shrink = sampling._shrink

    def counted(*args):
        live, local = shrink(*args)
        shrinks.append(local is not None)
        return live, local

    monkeypatch.setattr(sampling, "_shrink", counted)
    for seed in range(3):
        torch.manual_seed(seed)
        ours, logps = sample_tokens(
            model,
            ids,
            mask,
            max_new_tokens=16,
            processors=LogitsProcessorList(warpers),
            n=3,
            pad_id=tok.pad_token_id,
        )
        torch.manual_seed(seed)
        theirs = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            logits_processor=LogitsProcessorList(warpers),
            max_new_tokens=16,
            num_return_sequences=3,
            pad_token_id=tok.pad_token_id,
        )
        assert torch.equal(ours, theirs)
        assert logps.shape == (ids.shape[0] * 3, ours.shape[1] - ids.shape[1])
    assert any(shrinks)  # finished rows left the forward batch while others went on


def test_logps_are_those_of_the_sampling_distribution(policy, smoke_task_dir):
    model, tok = policy
    ids, mask = _batch(smoke_task_dir, tok, n=3)
    warpers = LogitsProcessorList([TemperatureLogitsWarper(0.8)])
    torch.manual_seed(0)
    out, logps = sample_tokens(
        model, ids, mask, max_new_tokens=10, processors=warpers, pad_id=tok.pad_token_id
    )
    width = ids.shape[1]
    full_mask = torch.cat([mask, torch.ones_like(out[:, width:])], dim=1)
    with torch.no_grad():
        logits = model(input_ids=out, attention_mask=full_mask).logits[:, width - 1 : -1]
    expected = torch.log_softmax(logits.float() / 0.8, -1).gather(2, out[:, width:, None])[..., 0]
    for b in range(out.shape[0]):
        row = out[b, width:].tolist()
        n = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
        torch.testing.assert_close(logps[b, :n], expected[b, :n], atol=1e-4, rtol=0)


def test_models_it_does_not_cover_go_through_generate(policy, smoke_task_dir, monkeypatch):
    model, tok = policy
    ids, mask = _batch(smoke_task_dir, tok, n=2)
    torch.manual_seed(1)
    fast, fast_logps = sample_tokens(model, ids, mask, max_new_tokens=8, pad_id=tok.pad_token_id)
    monkeypatch.setattr(model.generation_config, "repetition_penalty", 1.3)
    assert not decoding_loop_supported(model)
    monkeypatch.setattr(model.generation_config, "repetition_penalty", 1.0)
    monkeypatch.setattr(sampling, "decoding_loop_supported", lambda m: False)
    torch.manual_seed(1)
    slow, slow_logps = sample_tokens(model, ids, mask, max_new_tokens=8, pad_id=tok.pad_token_id)
    assert torch.equal(fast, slow)
    torch.testing.assert_close(fast_logps, slow_logps, atol=1e-5, rtol=0)


def test_online_iqlearn_continuations_match_generate(policy, smoke_task_dir):
    model, tok = policy
    ids, mask = _batch(smoke_task_dir, tok, n=4)
    prompts = [row[m.bool()].tolist() for row, m in zip(ids, mask, strict=True)]
    eos, pad = tok.eos_token_id, tok.pad_token_id
    torch.manual_seed(3)
    ours = sample_continuations(
        model, prompts, eos_id=eos, pad_id=pad, temperature=0.8, max_new_tokens=12
    )
    torch.manual_seed(3)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=True,
        temperature=0.8,
        top_k=0,
        top_p=1.0,
        max_new_tokens=12,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    cut = [cut_at_eos(row, eos) for row in out[:, ids.shape[1] :].tolist()]
    theirs = collate_samples(prompts, [r for r, _ in cut], [f for _, f in cut], pad)
    for a, b in zip(vars(ours).values(), vars(theirs).values(), strict=True):
        assert torch.equal(a, b)
