"""Shared token-level operations for the losses: chunked output head, action masks, IQ terms.

Computes, in fp32 and with memory bounded by vocabulary chunks, the token-level quantities of
Wulfmeier et al. 2024, *Imitating Language via Scalable Inverse Reinforcement Learning*
(arXiv 2409.01369): Q(s_t, ·) = logits_t, V(s_t) = logsumexp(logits_t),
log π(a_t|s_t) = Q(s_t, a_t) − V(s_t) (τ = 1). SFT, MLE + entropy and IQLearn all go through
:func:`token_stats`, so they share one code path (and λ = 0 IQLearn is bitwise SFT).

Layout (decoder-only, right padding): ``input_ids`` is (B, L); position ``t`` of the hidden states
predicts token ``t + 1``, so every action-aligned tensor is (B, L − 1) and index ``t`` scores the
action ``a_t = input_ids[:, t + 1]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from irlalign.losses.iqlearn import implicit_rewards

Head = Callable[[Tensor], Tensor]


def _chunk_stats(h: Tensor, a: Tensor, head: Head, with_entropy: bool) -> tuple[Tensor, ...]:
    # The only place a (rows, V) logits block exists; fp32 from here on whatever the head's dtype.
    logits = head(h).float()
    v = torch.logsumexp(logits, dim=-1)
    q = logits.gather(-1, a.unsqueeze(-1)).squeeze(-1)
    if not with_entropy:
        return q, v
    entropy = v - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    return q, v, entropy


def token_stats(
    hidden: Tensor,
    actions: Tensor,
    head: Head,
    *,
    chunk_tokens: int = 4096,
    with_entropy: bool = False,
) -> tuple[Tensor, ...]:
    """Per-position Q(s, a), V(s) = logsumexp(logits) [and entropy H(π(·|s))], never all logits.

    ``hidden`` (B, T, d) final hidden states; ``actions`` (B, T) the token scored at each position
    (any valid id where unused); ``head`` maps (n, d) -> (n, V) logits (call the model's own output
    module so its post-processing and any sharding wrapper apply). The flattened B·T rows are
    processed ``chunk_tokens`` at a time, each chunk under a non-reentrant checkpoint so only one
    (chunk, V) block is alive and the backward pass recomputes it.

    Returns ``(q, v)`` or ``(q, v, entropy)``, each (B, T) fp32.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    b, t, d = hidden.shape
    h, a = hidden.reshape(b * t, d), actions.reshape(b * t)
    outs = [
        checkpoint(
            _chunk_stats,
            h[i : i + chunk_tokens],
            a[i : i + chunk_tokens],
            head,
            with_entropy,
            use_reentrant=False,
        )
        for i in range(0, b * t, chunk_tokens)
    ]
    return tuple(torch.cat(x).reshape(b, t) for x in zip(*outs, strict=True))


def _chunk_kl(h: Tensor, h_ref: Tensor, head: Head, ref_head: Head) -> Tensor:
    logp = torch.log_softmax(head(h).float(), dim=-1)
    ref = torch.log_softmax(ref_head(h_ref).float(), dim=-1)
    return (logp.exp() * (logp - ref)).sum(-1)


def token_kl(
    hidden: Tensor,
    ref_hidden: Tensor,
    mask: Tensor,
    head: Head,
    ref_head: Head,
    *,
    chunk_tokens: int = 4096,
) -> Tensor:
    """Exact KL(π(·|s_t) ‖ π_ref(·|s_t)) summed over the vocabulary at each action position.

    ``hidden`` / ``ref_hidden`` (B, L, d) the policy's and the reference's final hidden states of
    the same batch; ``mask`` (B, L − 1) the positions to score (action-aligned, so position t
    uses the states that predict token t + 1). Only masked rows go through the heads, in
    checkpointed chunks as in :func:`token_stats`. Returns (B, L − 1) fp32, 0 where unmasked;
    differentiable with respect to the policy side only.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    m = mask.bool()
    h, h_ref = hidden[:, :-1][m], ref_hidden[:, :-1][m].detach()
    parts = [
        checkpoint(
            _chunk_kl,
            h[i : i + chunk_tokens],
            h_ref[i : i + chunk_tokens],
            head,
            ref_head,
            use_reentrant=False,
        )
        for i in range(0, h.shape[0], chunk_tokens)
    ]
    out = torch.zeros(m.shape, dtype=torch.float32, device=hidden.device)
    if parts:
        out = out.masked_scatter(m, torch.cat(parts))
    return out


def action_masks(
    input_ids: Tensor, completion_mask: Tensor, eos_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Action-aligned masks from a right-padded batch; each output is (B, L − 1) bool.

    ``completion_mask`` (B, L) is 1 on response tokens up to and including the first EOS.
    ``mask``: a_t is a response token. ``terminal``: a_t is the FIRST EOS inside the mask (so
    pad == eos tokenizers are safe). ``truncated``: a_t is the last response action of a row that
    has no terminal (a time limit, not an episode end).
    """
    actions, mask = input_ids[:, 1:], completion_mask[:, 1:].bool()
    eos = (actions == eos_id) & mask
    terminal = eos & (eos.long().cumsum(1) == 1)
    last = mask & (mask.long().flip(1).cumsum(1).flip(1) == 1)
    truncated = last & ~terminal.any(1, keepdim=True)
    return mask, terminal, truncated


def _shifted_actions(input_ids: Tensor) -> Tensor:
    # Position j scores token j + 1; the last position has no action (0 is a placeholder) but its
    # V is still needed to bootstrap truncated rows, so it is scored like the others.
    return torch.cat([input_ids[:, 1:], torch.zeros_like(input_ids[:, :1])], dim=1)


def causal_logps(
    hidden: Tensor,
    input_ids: Tensor,
    completion_mask: Tensor,
    head: Head,
    *,
    chunk_tokens: int = 4096,
    with_entropy: bool = False,
) -> tuple[Tensor, ...]:
    """Per-token log π(a_t|s_t) of a causal batch, aligned with :func:`action_masks`.

    ``hidden`` (B, L, d), ``input_ids`` / ``completion_mask`` (B, L). Returns ``(logp, mask)`` or
    ``(logp, mask, entropy)``, each (B, L − 1); logp and entropy fp32. Uses the same
    :func:`token_stats` call as :func:`iq_terms`, so SFT and IQLearn see identical numbers.
    """
    stats = token_stats(
        hidden,
        _shifted_actions(input_ids),
        head,
        chunk_tokens=chunk_tokens,
        with_entropy=with_entropy,
    )
    q, v_all = stats[0], stats[1]
    logp = q[:, :-1] - v_all[:, :-1]
    mask = completion_mask[:, 1:].bool()
    if with_entropy:
        return logp, mask, stats[2][:, :-1]
    return logp, mask


@dataclass
class IQTerms:
    """Action-aligned (B, L − 1) tensors of one causal batch for the IQLearn losses.

    ``logp`` log π(a_t|s_t); ``v`` V(s_t); ``v_next`` V(s_{t+1}) (0 after the terminal EOS);
    ``r_hat`` implicit reward r_t = V(s_t) + log π(a_t|s_t) − γ·V(s_{t+1}); ``mask`` response
    actions (MLE term); ``td_mask`` actions carrying a TD term; ``terminal`` / ``truncated`` as in
    :func:`action_masks`.
    """

    logp: Tensor
    v: Tensor
    v_next: Tensor
    r_hat: Tensor
    mask: Tensor
    td_mask: Tensor
    terminal: Tensor
    truncated: Tensor


def iq_terms(
    hidden: Tensor,
    input_ids: Tensor,
    completion_mask: Tensor,
    head: Head,
    *,
    eos_id: int,
    gamma: float = 1.0,
    drop_truncated: bool = False,
    chunk_tokens: int = 4096,
    tau: float = 1.0,
    value_fn: Callable[[Tensor], Tensor] | None = None,
) -> IQTerms:
    """Everything Eq. (14) needs from one causal batch, with terminal/truncation rules.

    V(s') = 0 after the first EOS; a truncated row bootstraps its last TD term from the next
    position's V, or with ``drop_truncated=True`` drops that TD term (its MLE term stays).
    ``tau`` is the soft-value temperature (an ablation): V = τ·LSE(Q/τ),
    log π = (Q − V)/τ, r = V + τ·log π − γV'; τ = 1 is Eq. (14) exactly.
    ``value_fn`` (the value-head ablation) maps (B, L, d) hidden states to (B, L)
    values V_φ(s) that replace logsumexp as V; log π stays the log-softmax of the logits.
    """
    if value_fn is not None and tau != 1.0:
        raise ValueError("tau != 1 and a value head are separate ablations; use one at a time")
    scaled = head if tau == 1.0 else (lambda h: head(h) / tau)
    q, v_all = token_stats(hidden, _shifted_actions(input_ids), scaled, chunk_tokens=chunk_tokens)
    logp = q[:, :-1] - v_all[:, :-1]
    if value_fn is not None:
        v_all = value_fn(hidden).float()
    rules = {"eos_id": eos_id, "gamma": gamma, "drop_truncated": drop_truncated}
    terms = iq_terms_from_stats(logp, v_all, input_ids, completion_mask, **rules)
    if tau != 1.0:  # the statistics above are of Q/τ; V, V' and r scale back by τ
        terms.v, terms.v_next, terms.r_hat = tau * terms.v, tau * terms.v_next, tau * terms.r_hat
    return terms


def iq_terms_from_stats(
    logp: Tensor,
    v_all: Tensor,
    input_ids: Tensor,
    completion_mask: Tensor,
    *,
    eos_id: int,
    gamma: float = 1.0,
    drop_truncated: bool = False,
) -> IQTerms:
    """:class:`IQTerms` from log π(a_t|s_t) (B, L − 1) and V(s_t) at every position (B, L): the
    rules of :func:`iq_terms` once the statistics exist (the fused pass returns them)."""
    mask, terminal, truncated = action_masks(input_ids, completion_mask, eos_id)
    v = v_all[:, :-1]
    r_hat, v_next = implicit_rewards(logp, v, v_all[:, 1:], terminal, gamma=gamma)
    td_mask = mask & ~truncated if drop_truncated else mask
    return IQTerms(logp, v, v_next, r_hat, mask, td_mask, terminal, truncated)
