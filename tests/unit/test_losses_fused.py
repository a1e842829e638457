"""The fused head pass gives the checkpointed path's losses and gradients (fp32 tolerance)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from irlalign.losses import causal_logps, iq_terms, iqlearn_offline_loss, sft_entropy_loss, sft_loss
from irlalign.losses.fused import action_rows, can_fuse, kept
from irlalign.losses.fused_losses import fused_iq_loss, fused_sft_loss

B, L, D, V, EOS = 3, 9, 8, 13, 2


def _batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, V, (B, L), generator=g)
    cm = torch.zeros(B, L, dtype=torch.long)
    cm[:, 3:] = 1
    ids[0, 6], cm[0, 7:] = EOS, 0  # row 0 ends with EOS, then padding
    ids[1, 4], cm[1, 5:] = EOS, 0  # row 1: a one-token response after the prompt... then EOS
    return ids, cm  # row 2 has no EOS: truncated


def _reference(kind, h, ids, cm, head, chunk):
    if kind == "sft":
        lp, m = causal_logps(h, ids, cm, head, chunk_tokens=chunk)
        return sft_loss(lp, m)[0]
    if kind == "entropy":
        lp, m, e = causal_logps(h, ids, cm, head, chunk_tokens=chunk, with_entropy=True)
        return sft_entropy_loss(lp, e, m, beta=0.3, num_items=7.0)[0]
    gamma, drop = (0.9, False) if kind == "iq_gamma" else (1.0, kind == "iq_drop")
    t = iq_terms(h, ids, cm, head, eos_id=EOS, gamma=gamma, drop_truncated=drop, chunk_tokens=chunk)
    return iqlearn_offline_loss(t.logp, t.r_hat, t.mask, t.td_mask, lam=0.7)[0]


def _fused(kind, h, ids, cm, head, chunk):
    if kind == "sft":
        return fused_sft_loss(h, ids, cm, head, chunk_tokens=chunk)[0]
    if kind == "entropy":
        return fused_sft_loss(
            h, ids, cm, head, entropy_beta=0.3, num_items=7.0, chunk_tokens=chunk
        )[0]
    gamma, drop = (0.9, False) if kind == "iq_gamma" else (1.0, kind == "iq_drop")
    out = fused_iq_loss(
        h, ids, cm, head, eos_id=EOS, lam=0.7, gamma=gamma, drop_truncated=drop, chunk_tokens=chunk
    )
    return out[0]


def _loss_and_grads(fn, kind, h0, ids, cm, head, chunk):
    head.zero_grad()
    h = h0.clone().requires_grad_()
    loss = fn(kind, h, ids, cm, head, chunk)
    (2.5 * loss).backward()  # a non-unit upstream gradient reaches the saved gradients
    grads = [h.grad, head.weight.grad] + ([head.bias.grad] if head.bias is not None else [])
    return [loss.detach()] + [g.clone() for g in grads]


@pytest.mark.parametrize("kind", ["sft", "entropy", "iq", "iq_drop", "iq_gamma"])
@pytest.mark.parametrize("chunk", [1, 4, 100])  # chunks end inside and between sequences
@pytest.mark.parametrize("bias", [False, True])
def test_fused_pass_matches_the_checkpointed_chunks(kind, chunk, bias):
    torch.manual_seed(0)
    head = nn.Linear(D, V, bias=bias)
    h0 = torch.randn(B, L, D)
    ids, cm = _batch()
    ref = _loss_and_grads(_reference, kind, h0, ids, cm, head, chunk)
    got = _loss_and_grads(_fused, kind, h0, ids, cm, head, chunk)
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_fused_iq_terms_are_the_checkpointed_terms():
    torch.manual_seed(1)
    head, h = nn.Linear(D, V), torch.randn(B, L, D, requires_grad=True)
    ids, cm = _batch()
    _, metrics, terms = fused_iq_loss(h, ids, cm, head, eos_id=EOS, lam=0.7, chunk_tokens=4)
    ref = iq_terms(h, ids, cm, head, eos_id=EOS)
    assert torch.equal(terms.mask, ref.mask) and ref.mask.any() and not ref.mask.all()
    for name in ("logp", "v", "v_next", "r_hat"):  # on the response: no head work elsewhere
        got, want = (
            torch.where(ref.mask, x, 0.0) for x in (getattr(terms, name), getattr(ref, name))
        )
        torch.testing.assert_close(got, want.detach())
    _, ref_metrics = iqlearn_offline_loss(ref.logp, ref.r_hat, ref.mask, ref.td_mask, lam=0.7)
    for key, value in ref_metrics.items():
        torch.testing.assert_close(metrics[key], value, rtol=1e-5, atol=1e-6)


def test_the_head_runs_on_response_actions_and_their_next_rows_only():
    mask = torch.tensor([[False, True, True, False], [True, False, False, True]])
    rows = action_rows(mask)  # (B, L): the last position scores no action
    assert rows.tolist() == [[False, True, True, False, False], [True, False, False, True, False]]
    ahead = action_rows(mask, look_ahead=True)
    assert ahead.tolist() == [[False, True, True, True, False], [True, True, False, True, True]]
    flat = torch.arange(10)
    assert kept(flat, ahead).tolist() == [1, 2, 3, 5, 6, 8, 9]
    assert kept(flat, None) is flat


def test_only_a_plain_linear_head_with_gradients_is_fused():
    head = nn.Linear(D, V)
    assert can_fuse(head)
    with torch.no_grad():
        assert not can_fuse(head)  # evaluation: nothing to fuse
    assert not can_fuse(lambda h: head(h))  # soft-capped or wrapped heads
    sharded = copy.deepcopy(head)
    sharded.weight = nn.Parameter(torch.zeros(0))  # a ZeRO-3 / FSDP shard outside its forward
    assert not can_fuse(sharded)


def _tiny_trainer(method_name: str, fused: bool, tied: bool):
    from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments

    from irlalign.trainers.iqlearn import IQLearnConfig, IQLearnTrainer
    from irlalign.trainers.sft import SFTConfig, SFTTrainer

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=tied,
        pad_token_id=0, bos_token_id=1, eos_token_id=EOS,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    args = TrainingArguments(output_dir="unused", report_to="none", use_cpu=True)
    if method_name == "sft":
        method = SFTConfig(entropy_beta=0.1, chunk_tokens=5, fused_head=fused)
        return SFTTrainer(model=model, args=args, method=method)
    method = IQLearnConfig(lam=0.5, chunk_tokens=5, fused_head=fused)
    return IQLearnTrainer(model=model, args=args, method=method)


@pytest.mark.parametrize("method_name", ["sft", "iqlearn"])
@pytest.mark.parametrize("tied", [False, True])
def test_trainers_give_the_same_step_with_and_without_fusion(method_name, tied, tmp_path):
    ids, cm = _batch()
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "completion_mask": cm}
    results = []
    for fused in (False, True):
        trainer = _tiny_trainer(method_name, fused, tied)
        loss = trainer.compute_loss(trainer.model, dict(inputs))
        loss.backward()
        grads = {k: p.grad.clone() for k, p in trainer.model.named_parameters()}
        results.append((loss.detach(), grads, trainer.metric_store))
    (loss_a, grads_a, _), (loss_b, grads_b, _) = results
    torch.testing.assert_close(loss_b, loss_a)
    assert grads_a.keys() == grads_b.keys()
    for k in grads_a:
        torch.testing.assert_close(grads_b[k], grads_a[k], rtol=1e-5, atol=1e-6, msg=k)


def test_a_frozen_head_gets_no_gradient_and_the_hidden_states_the_same_one():
    torch.manual_seed(2)
    head, h0 = nn.Linear(D, V), torch.randn(B, L, D)
    ids, cm = _batch()
    want = _loss_and_grads(_reference, "iq", h0, ids, cm, head, 4)
    head.zero_grad(set_to_none=True)
    head.requires_grad_(False)
    h = h0.clone().requires_grad_()
    fused_iq_loss(h, ids, cm, head, eos_id=EOS, lam=0.7, chunk_tokens=4)[0].mul(2.5).backward()
    assert head.weight.grad is None
    torch.testing.assert_close(h.grad, want[1], rtol=1e-5, atol=1e-6)


def test_a_tied_embedding_gradient_is_added_into_the_pass_buffer(monkeypatch):
    """With tied embeddings the pass's (V, d) weight gradient becomes the parameter's .grad and
    the embedding's gradient is added into it: no third (V, d) tensor, the same values."""
    import irlalign.losses.fused as fused

    buffers = []

    def spy(ctx, grad_total):
        out = scaled_head_grads(ctx, grad_total)
        buffers.append(out[1].data_ptr())
        return out

    scaled_head_grads = fused.scaled_head_grads
    monkeypatch.setattr(fused, "scaled_head_grads", spy)
    torch.manual_seed(0)
    head = nn.Linear(D, V, bias=False)
    ids, cm = _batch()
    grads = []
    for path in (_reference, _fused):
        head.weight.grad = None
        hidden = nn.functional.embedding(ids, head.weight).tanh()  # the tied input embedding
        path("sft", hidden, ids, cm, head, 4).backward()
        grads.append(head.weight.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)
    assert buffers == [grads[1].data_ptr()]
