"""irlalign.losses.ops: chunked head, action masks, padding / chunking / prompt-mask invariants,
and the SFT loss against Hugging Face's built-in causal-LM loss on a tiny Llama."""

from __future__ import annotations

import pytest
import torch

from irlalign.losses import (
    action_masks,
    causal_logps,
    iq_terms,
    iqlearn_offline_loss,
    sft_loss,
    token_stats,
)

SEED = 0
V, D, EOS = 11, 8, 2


def make_batch(pad_id: int = 0, dtype: torch.dtype = torch.float64):
    """Three right-padded rows (B=3, L=10): EOS-terminated, truncated at the row's end, and
    truncated mid-row followed by pads. Response tokens avoid EOS and the pad id."""
    g = torch.Generator().manual_seed(SEED)
    b, length = 3, 10
    ids = torch.randint(3, V, (b, length), generator=g)
    cm = torch.zeros(b, length, dtype=torch.long)
    cm[0, 3:7] = 1  # prompt 0..2, response 3..6, EOS at 6
    ids[0, 6] = EOS
    ids[0, 7:] = pad_id
    cm[1, 2:] = 1  # response runs to the end of the row, no EOS
    cm[2, 4:7] = 1  # response 4..6, no EOS, then pads
    ids[2, 7:] = pad_id
    hidden = torch.randn(b, length, D, generator=g, dtype=dtype)
    head = torch.nn.Linear(D, V, bias=False).to(dtype)
    with torch.no_grad():
        head.weight.copy_(torch.randn(V, D, generator=g, dtype=dtype))
    return ids, cm, hidden, head


def iq_loss(hidden, ids, cm, head, *, lam=0.5, gamma=0.9, chunk_tokens=4096, drop=False):
    t = iq_terms(
        hidden,
        ids,
        cm,
        head,
        eos_id=EOS,
        gamma=gamma,
        drop_truncated=drop,
        chunk_tokens=chunk_tokens,
    )
    return iqlearn_offline_loss(t.logp, t.r_hat, t.mask, t.td_mask, lam=lam)[0]


def test_token_stats_matches_full_logits():
    ids, _, hidden, head = make_batch()
    q, v, ent = token_stats(hidden, ids, head, chunk_tokens=7, with_entropy=True)
    logits = head(hidden)
    logp_all = torch.log_softmax(logits, -1)
    assert q.dtype == torch.float32
    torch.testing.assert_close(q, logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1).float())
    torch.testing.assert_close(v, torch.logsumexp(logits, -1).float())
    torch.testing.assert_close(ent, -(logp_all.exp() * logp_all).sum(-1).float())


def test_token_stats_casts_to_fp32_after_a_low_precision_head():
    ids, _, hidden, head = make_batch(dtype=torch.bfloat16)
    q, v = token_stats(hidden, ids, head, chunk_tokens=5)
    assert q.dtype == v.dtype == torch.float32
    torch.testing.assert_close(v, torch.logsumexp(head(hidden).float(), -1))


def test_action_masks_by_hand():
    ids, cm, _, _ = make_batch()
    mask, terminal, truncated = action_masks(ids, cm, EOS)
    assert mask.shape == terminal.shape == truncated.shape == (3, 9)
    assert mask.dtype == torch.bool
    assert mask[0].nonzero().flatten().tolist() == [2, 3, 4, 5]
    assert terminal.nonzero().tolist() == [[0, 5]]
    assert truncated.nonzero().tolist() == [[1, 8], [2, 5]]


def test_pad_equal_to_eos_uses_first_eos_only():
    ids_pad0, cm, hidden, head = make_batch(pad_id=0)
    ids_eos, _, _, _ = make_batch(pad_id=EOS)
    assert (ids_eos == EOS).sum() > 2  # later EOS ids exist, outside the completion mask
    m0, te0, tr0 = action_masks(ids_pad0, cm, EOS)
    m1, te1, tr1 = action_masks(ids_eos, cm, EOS)
    assert torch.equal(m0, m1) and torch.equal(te0, te1) and torch.equal(tr0, tr1)
    assert te1.nonzero().tolist() == [[0, 5]]
    # an EOS id inside the mask after the first one is not a second terminal
    cm_long = cm.clone()
    cm_long[0, 7] = 1
    assert action_masks(ids_eos, cm_long, EOS)[1].nonzero().tolist() == [[0, 5]]
    l0 = iq_loss(hidden, ids_pad0, cm, head)
    l1 = iq_loss(hidden, ids_eos, cm, head)
    assert torch.equal(l0, l1)


@pytest.mark.parametrize("drop", [False, True])
def test_padding_invariance(drop):
    ids, cm, hidden, head = make_batch()
    base = iq_loss(hidden, ids, cm, head, drop=drop)
    g = torch.Generator().manual_seed(SEED + 1)
    extra = 5
    ids_p = torch.cat([ids, torch.full((3, extra), EOS)], 1)
    cm_p = torch.cat([cm, torch.zeros(3, extra, dtype=cm.dtype)], 1)
    junk = 100.0 * torch.randn(3, extra, D, generator=g, dtype=hidden.dtype)
    padded = iq_loss(torch.cat([hidden, junk], 1), ids_p, cm_p, head, drop=drop)
    torch.testing.assert_close(padded, base, rtol=1e-6, atol=1e-6)


def _loss_and_grads(ids, cm, hidden, head, chunk_tokens):
    h = hidden.clone().requires_grad_(True)
    head.zero_grad()
    loss = iq_loss(h, ids, cm, head, chunk_tokens=chunk_tokens)
    loss.backward()
    return loss.detach(), h.grad, head.weight.grad.clone()


def _unchunked_reference(ids, cm, hidden, head, *, lam=0.5, gamma=0.9):
    logits = head(hidden).float()  # same precision policy as token_stats: fp32 after the head
    v_all = torch.logsumexp(logits, -1)
    logp = torch.log_softmax(logits, -1)[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    mask, terminal, _ = action_masks(ids, cm, EOS)
    v_next = torch.where(terminal, 0.0, v_all[:, 1:])
    r = v_all[:, :-1] + logp - gamma * v_next
    n = mask.sum()
    return (-(logp * mask).sum() + lam * (r.pow(2) * mask).sum()) / n


def test_chunking_invariance_loss_and_grads():
    ids, cm, hidden, head = make_batch()
    n_rows = ids.numel()
    ref_h = hidden.clone().requires_grad_(True)
    head.zero_grad()
    ref = _unchunked_reference(ids, cm, ref_h, head)
    ref.backward()
    ref_gw = head.weight.grad.clone()
    assert n_rows % 7 != 0
    runs = [_loss_and_grads(ids, cm, hidden, head, c) for c in (1, 7, n_rows, n_rows + 13)]
    for loss, gh, gw in runs:
        torch.testing.assert_close(loss, runs[-1][0], rtol=1e-6, atol=0)
        torch.testing.assert_close(gh, runs[-1][1], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(gw, runs[-1][2], rtol=1e-6, atol=1e-9)
        # against the unchunked reference: fp32 round-off (different reduction orders)
        torch.testing.assert_close(loss, ref, rtol=1e-6, atol=0)
        for got, want in ((gh, ref_h.grad), (gw, ref_gw)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * want.abs().max().item())


def test_no_logits_are_saved_for_backward():
    ids, cm, hidden, head = make_batch()
    h = hidden.clone().requires_grad_(True)
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        token_stats(h, ids, head, chunk_tokens=4)
    # checkpointing keeps only the chunk inputs; logits are recomputed in backward
    assert shapes and not any(s[-1:] == (V,) for s in shapes), shapes


def test_prompt_masking_gradient_is_exactly_zero():
    ids, cm, hidden, _ = make_batch()
    logits = torch.randn(
        3, 10, V, generator=torch.Generator().manual_seed(SEED), requires_grad=True
    )
    loss = iq_loss(logits, ids, cm, torch.nn.Identity(), lam=1.0)
    loss.backward()
    first_resp = cm.argmax(1)  # first response token; its predictor is first_resp - 1
    for b in range(3):
        last_prompt = int(first_resp[b]) - 1
        assert torch.all(logits.grad[b, :last_prompt] == 0), b
        assert logits.grad[b, last_prompt].abs().sum() > 0
    # positions after the response (pads) get nothing either, except a truncated row's bootstrap
    assert torch.all(logits.grad[0, 7:] == 0)
    assert torch.all(logits.grad[2, 7:] == 0)
    # the truncated row's last response token has no action of its own, but its V bootstraps
    # the last TD term: gradient purely along softmax(logits) there
    g_boot = logits.grad[2, 6]
    assert g_boot.abs().sum() > 0
    p = torch.softmax(logits.detach()[2, 6], -1)
    torch.testing.assert_close(g_boot, g_boot.sum() / p.sum() * p)


def test_causal_logps_matches_iq_terms_logp():
    ids, cm, hidden, head = make_batch()
    logp, mask = causal_logps(hidden, ids, cm, head, chunk_tokens=6)
    t = iq_terms(hidden, ids, cm, head, eos_id=EOS, chunk_tokens=6)
    assert torch.equal(logp, t.logp) and torch.equal(mask, t.mask)


def test_sft_loss_matches_hf_llama_builtin_loss():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(SEED)
    cfg = transformers.LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    model = transformers.LlamaForCausalLM(cfg).float().eval()
    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(3, 50, (3, 12), generator=g)
    attn = torch.ones_like(ids)
    cm = torch.zeros_like(ids)
    cm[0, 4:9], cm[1, 2:12], cm[2, 6:8] = 1, 1, 1
    ids[0, 8] = EOS
    attn[0, 9:] = 0
    attn[2, 8:] = 0
    ids[attn == 0] = 0
    labels = ids.masked_fill(cm == 0, -100)
    hf = model(input_ids=ids, attention_mask=attn, labels=labels).loss
    hidden = model.model(input_ids=ids, attention_mask=attn).last_hidden_state
    logp, mask = causal_logps(hidden, ids, cm, model.get_output_embeddings(), chunk_tokens=5)
    ours, metrics = sft_loss(logp, mask)
    assert mask.sum() == (labels[:, 1:] != -100).sum()
    assert abs(ours.item() - hf.item()) < 1e-6
    assert metrics["loss/total"] == ours


def test_value_head_ablation_by_hand():
    """Value-head ablation: TD_t = v_φ(s_t) + log π(a_t|s_t) − γ·v_φ(s_{t+1}), v_φ(terminal) = 0,
    log π still the log-softmax of the logits; written out position by position."""
    ids, cm, hidden, head = make_batch()
    w = torch.randn(D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def value_fn(h):
        return h @ w

    gamma = 0.9
    t = iq_terms(hidden, ids, cm, head, eos_id=EOS, gamma=gamma, value_fn=value_fn)
    logp_all = torch.log_softmax(head(hidden), dim=-1)
    vals = value_fn(hidden)
    for b in range(ids.shape[0]):
        for j in range(ids.shape[1] - 1):
            if not t.mask[b, j]:
                continue
            a = ids[b, j + 1]
            v_next = 0.0 if (a == EOS and t.terminal[b, j]) else vals[b, j + 1]
            expected = vals[b, j] + logp_all[b, j, a] - gamma * v_next
            assert torch.allclose(t.r_hat[b, j].double(), expected.double(), atol=1e-5)
            assert torch.allclose(t.logp[b, j].double(), logp_all[b, j, a], atol=1e-5)
    with pytest.raises(ValueError, match="separate ablations"):
        iq_terms(hidden, ids, cm, head, eos_id=EOS, tau=0.5, value_fn=value_fn)
