"""AVA through the fused head pass against the checkpointed Eq. 12 head, in fp64 on a tiny random
model: the same loss, metrics and gradient for every parameter, for AVA-d and AVA-p under each
reward weighting, both Q heads, the exact Boltzmann normaliser, both reward readings, the
paper's likelihood range, the ablations, and chunks that cut transitions apart."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from irlalign.losses import ava_fused
from irlalign.losses.ava import ava_d_loss
from irlalign.trainers.ava import AVAConfig, attach_ava_heads, ava_objective, preference_objective

VOCAB = 50


def tiny(tied: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
        tie_word_embeddings=tied,
    )  # fmt: skip
    return LlamaForCausalLM(cfg)


def batch(rows: int = 4, length: int = 12) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (rows, length), generator=g)
    am = torch.ones(rows, length, dtype=torch.long)
    for r, n in enumerate((length, length - 3, length - 5, length - 1)[:rows]):
        am[r, n:] = 0
    cm = am.clone()
    cm[:, :3] = 0
    cm[0, :5] = 0  # prompts of different lengths
    return {"input_ids": ids.masked_fill(am == 0, 0), "attention_mask": am, "completion_mask": cm}


def run(cfg: AVAConfig, fused: bool, pairs: bool, tied: bool):
    cfg.fused_head = fused
    model = tiny(tied)
    attach_ava_heads(model, cfg)
    model.double()
    b = batch()
    if pairs:
        objective = preference_objective(cfg, 2, b["attention_mask"])
    else:
        objective = lambda terms: ava_d_loss(terms, lam=cfg.lam)  # noqa: E731
    loss, metrics, terms = ava_objective(model, b, cfg, objective)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return loss, metrics, terms, grads


CASES = {
    "p-default-chunk3": (dict(chunk_tokens=3), True, False),
    "p-tied-exact-shift0": (dict(beta=2.0, shift=0, chunk_tokens=2, alpha=3.0), True, True),
    "p-causal-fresh-ablations": (
        dict(
            rwt="attn_causal",
            q_head="fresh",
            chunk_tokens=1,
            use_neg=False,
            td_on_rejected=False,
            cer_log=True,
            gamma=0.9,
        ),
        True,
        False,
    ),  # fmt: skip
    "p-none-noirl": (dict(rwt="none", use_irl=False, exact_boltzmann=True), True, True),
    "d-paper-range": (dict(ll_range="paper", lam=0.3, gamma=0.8, chunk_tokens=4), False, False),
    "d-none-one-chunk": (dict(rwt="none", beta=0.5, chunk_tokens=1000), False, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fused_pass_gives_the_checkpointed_loss_and_gradients(case, monkeypatch):
    fields, pairs, tied = CASES[case]
    calls = []
    real = ava_fused.FusedEq12Loss.apply
    monkeypatch.setattr(ava_fused.FusedEq12Loss, "apply", lambda *a: calls.append(1) or real(*a))
    loss0, metrics0, terms0, grads0 = run(AVAConfig(**fields), False, pairs, tied)
    assert not calls
    loss1, metrics1, terms1, grads1 = run(AVAConfig(**fields), True, pairs, tied)
    assert calls, "the fused pass was not taken"
    torch.testing.assert_close(loss1, loss0, rtol=1e-12, atol=1e-12)
    assert metrics1.keys() == metrics0.keys()
    for k in metrics0:
        torch.testing.assert_close(metrics1[k], metrics0[k], rtol=1e-12, atol=1e-12, msg=k)
    torch.testing.assert_close(terms1.delta, terms0.delta.detach(), rtol=1e-12, atol=1e-12)
    assert grads1.keys() == grads0.keys()
    assert any("lm_head" in n or "embed" in n for n in grads0)  # the head is trained
    for n in grads0:
        torch.testing.assert_close(grads1[n], grads0[n], rtol=1e-9, atol=1e-12, msg=n)


def test_coefficients_are_the_objective_derivatives():
    """∂L/∂ll and ∂L/∂log q read off AVA-d: 1/N on the masked positions, λ/N_td on transitions."""
    cfg = AVAConfig(rwt="none", lam=0.5)
    model = tiny(False)
    attach_ava_heads(model, cfg)
    b = batch()
    _, _, terms = ava_objective(model, b, cfg, lambda t: ava_d_loss(t, lam=cfg.lam))
    width = b["input_ids"].shape[1] - 1
    c_ll, c_td = ava_fused.term_coefficients(lambda t: ava_d_loss(t, lam=0.5), terms, width)
    act = b["completion_mask"][:, 1:].bool()
    td = terms.td_mask
    expect_ll = torch.where(act, -1.0 / act.sum(), 0.0)
    expect_td = torch.nn.functional.pad(torch.where(td, -0.5 / td.sum(), 0.0), (0, 1))
    torch.testing.assert_close(c_ll, expect_ll)
    torch.testing.assert_close(c_td, expect_td)


def test_evaluation_without_gradients_takes_the_checkpointed_head(monkeypatch):
    calls = []
    monkeypatch.setattr(ava_fused.FusedEq12Loss, "apply", lambda *a: calls.append(1))
    cfg = AVAConfig()
    model = tiny(False)
    attach_ava_heads(model, cfg)
    with torch.no_grad():
        loss, _, _ = ava_objective(model, batch(), cfg, lambda t: ava_d_loss(t, lam=1.0))
    assert torch.isfinite(loss) and not calls
