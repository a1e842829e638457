"""SFT and IQLearn (Eq. 14) through the fused head pass of :mod:`irlalign.losses.fused`.

Each function returns what its checkpointed counterpart gives (the loss, the metrics and, for
IQLearn, the :class:`~irlalign.losses.ops.IQTerms` for the trainer's logging) from one pass over
the vocabulary. The per-chunk losses are the library's own loss functions applied to a chunk's
rows with the whole batch's normaliser, so the chunks sum to exactly the same objective.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from irlalign.losses.fused import (
    ChunkLoss,
    action_rows,
    flat_action_rows,
    fused_token_loss,
    kept,
    next_row,
)
from irlalign.losses.iqlearn import implicit_rewards, iqlearn_offline_loss
from irlalign.losses.ops import IQTerms, _shifted_actions, action_masks, iq_terms_from_stats
from irlalign.losses.sft import Metrics, normaliser, sft_entropy_loss, sft_loss


def fused_sft_loss(
    hidden: Tensor,
    input_ids: Tensor,
    completion_mask: Tensor,
    head: nn.Linear,
    *,
    entropy_beta: float = 0.0,
    num_items: float | Tensor | None = None,
    chunk_tokens: int = 4096,
) -> tuple[Tensor, Metrics]:
    """:func:`~irlalign.losses.sft.sft_loss` (or ``sft_entropy_loss`` when ``entropy_beta`` > 0)
    of a right-padded causal batch; ``hidden`` (B, L, d), ``input_ids``, ``completion_mask``
    (B, L)."""
    mask = completion_mask[:, 1:].bool()
    n = normaliser(mask, num_items)
    keep = action_rows(mask)  # the head runs on response actions only
    rows = kept(flat_action_rows(mask), keep)

    def chunk(q: Tensor, v: Tensor, ent: Tensor | None, lo: int, hi: int) -> Tensor:
        k = hi - lo
        logp = q[:k] - v[:k]
        if ent is None:
            return sft_loss(logp, rows[lo:hi], num_items=n)[0]
        return sft_entropy_loss(logp, ent[:k], rows[lo:hi], beta=entropy_beta, num_items=n)[0]

    opts = {"chunk_tokens": chunk_tokens, "with_entropy": entropy_beta > 0, "keep": keep}
    loss, q, v, ent = fused_token_loss(hidden, _shifted_actions(input_ids), head, chunk, **opts)
    logp = (q - v)[:, :-1]
    with torch.no_grad():  # the metrics, from the pass's detached statistics
        if ent is not None:
            _, metrics = sft_entropy_loss(logp, ent[:, :-1], mask, beta=entropy_beta, num_items=n)
        else:
            _, metrics = sft_loss(logp, mask, num_items=n)
    metrics["loss/total"] = loss.detach()
    return loss, metrics


def _iq_chunk(masks: tuple[Tensor, Tensor, Tensor], keep, n, lam: float, gamma: float) -> ChunkLoss:
    """Eq. (14) on the rows [lo, hi) of the fused pass; ``masks`` (mask, td_mask, terminal) as
    the kept rows, ``n`` the whole batch's normaliser."""
    m, u, term = (kept(flat_action_rows(x), keep) for x in masks)

    def chunk(q: Tensor, v: Tensor, _ent: Tensor | None, lo: int, hi: int) -> Tensor:
        k = hi - lo
        logp = q[:k] - v[:k]
        r_hat, _ = implicit_rewards(logp, v[:k], next_row(v, k), term[lo:hi], gamma=gamma)
        return iqlearn_offline_loss(logp, r_hat, m[lo:hi], u[lo:hi], lam=lam, num_items=n)[0]

    return chunk


def fused_iq_loss(
    hidden: Tensor,
    input_ids: Tensor,
    completion_mask: Tensor,
    head: nn.Linear,
    *,
    eos_id: int,
    lam: float,
    gamma: float = 1.0,
    drop_truncated: bool = False,
    num_items: float | Tensor | None = None,
    chunk_tokens: int = 4096,
) -> tuple[Tensor, Metrics, IQTerms]:
    """Eq. (14), :func:`~irlalign.losses.iqlearn.iqlearn_offline_loss` of the terms
    :func:`~irlalign.losses.ops.iq_terms` would build (τ = 1, V = logsumexp), in one pass.

    Returns the loss, its metrics and the detached terms (for sequence-level logging), which are
    those of ``iq_terms`` on the response actions (``terms.mask``); the head does not run on other
    positions, where they are not meaningful."""
    mask, terminal, truncated = action_masks(input_ids, completion_mask, eos_id)
    td_mask = mask & ~truncated if drop_truncated else mask
    n = normaliser(mask, num_items)
    # each response action's row and the next one (V(s_{t+1})): no vocabulary work elsewhere
    keep = action_rows(mask, look_ahead=True)
    chunk = _iq_chunk((mask, td_mask, terminal), keep, n, lam, gamma)
    loss, q, v_all, _ = fused_token_loss(
        hidden, _shifted_actions(input_ids), head, chunk, chunk_tokens=chunk_tokens, keep=keep
    )
    rules = {"eos_id": eos_id, "gamma": gamma, "drop_truncated": drop_truncated}
    terms = iq_terms_from_stats((q - v_all)[:, :-1], v_all, input_ids, completion_mask, **rules)
    with torch.no_grad():
        _, metrics = iqlearn_offline_loss(
            terms.logp, terms.r_hat, terms.mask, terms.td_mask, lam=lam, num_items=n
        )
    metrics["loss/total"] = loss.detach()
    return loss, metrics, terms
