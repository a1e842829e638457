"""The output head and a token-level loss in one pass: the head's gradient is computed in forward.

:func:`irlalign.losses.ops.token_stats` bounds memory by checkpointing vocabulary chunks, so every
(rows, V) logits block is computed twice: in forward, and again in backward to rebuild the softmax
(four vocabulary-sized products per chunk: logits, logits again, ∂h, ∂W). When the loss is a sum
of per-position terms over a normaliser fixed before the forward — SFT's Σ m·(−log π)/N and
IQLearn's Eq. (14) are — each chunk's contribution, and its gradient with respect to the chunk's
logits, can already be computed in forward; the chunk's gradients for the hidden states and the
head weight are then two products, and backward only scales them by the incoming gradient. Three
products per chunk, the plain (unchunked) loss's count, with one (rows, V) block alive at a time
(the idea of fused linear–cross-entropy kernels, for any such loss).

A term at position t may read the statistics of position t + 1 (IQLearn's V(s_{t+1})): each
chunk also computes one row past its end (a look-ahead row), whose gradient it accumulates too.

Statistics per row, as in :func:`~irlalign.losses.ops.token_stats`: Q(s, a) = logits[a],
V(s) = logsumexp(logits), H = entropy of softmax(logits), all fp32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

# chunk_loss(q, v, entropy, lo, hi) -> the loss of the terms at rows [lo, hi); q, v (entropy or
# None) cover rows [lo, min(hi + 1, n)), i.e. one look-ahead row except in the last chunk.
ChunkLoss = Callable[[Tensor, Tensor, Tensor | None, int, int], Tensor]


def can_fuse(head: object) -> bool:
    """The fused path needs the head's weight itself: a plain, unsharded `nn.Linear` (a wrapped,
    soft-capped or LoRA head goes through the checkpointed path), and gradients to compute."""
    if type(head) is not nn.Linear or not torch.is_grad_enabled():
        return False
    return head.weight.dim() == 2 and head.weight.shape[1] == head.in_features


def _softmax_stats(z: Tensor, a: Tensor, with_entropy: bool):
    """Q(s, a), V and H of a (rows, V) fp32 logits block, turning ``z`` into softmax(z) in place
    (the block is the largest tensor of the pass: every step below reuses its memory)."""
    q = z.gather(-1, a.unsqueeze(-1)).squeeze(-1)
    m = z.amax(-1, keepdim=True)
    p = z.sub_(m).exp_()
    s = p.sum(-1, keepdim=True)
    v = (m + s.log()).squeeze(-1)
    p.div_(s)
    ent = -torch.special.xlogy(p, p).sum(-1) if with_entropy else None
    return q, v, ent, p


def _logit_grad(p: Tensor, a: Tensor, gq: Tensor, gv: Tensor, ent, gh) -> Tensor:
    """∂L/∂z from the row gradients of Q(s, a) = z_a, V = logsumexp z and H = −Σ p log p:
    gq·onehot(a) + gv·p − gh·p·(log p + H), written into ``p``'s memory."""
    if gh is not None:
        # ∂H/∂z_j = −p_j·(log p_j + H); xlogy keeps p = 0 entries at 0
        p_log_p = torch.special.xlogy(p, p)
        p.mul_((gv - gh * ent).unsqueeze(-1)).sub_(gh.unsqueeze(-1) * p_log_p)
    else:
        p.mul_(gv.unsqueeze(-1))
    return p.scatter_add_(-1, a.unsqueeze(-1), gq.unsqueeze(-1))


def row_grads(loss_fn: Callable[..., Tensor], *rows: Tensor) -> tuple[Tensor, list[Tensor]]:
    """A chunk's loss and its gradients with respect to its per-row statistics (cheap: the loss
    only sees (rows,) tensors); 0 for a statistic it does not read."""
    leaves = [x.detach().requires_grad_() for x in rows]
    with torch.enable_grad():
        loss = loss_fn(*leaves)
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves, strict=True)]
    return loss.detach(), grads


def _row_grads(chunk_loss: ChunkLoss, q, v, ent, lo: int, hi: int):
    if ent is None:
        loss, (gq, gv) = row_grads(lambda q_, v_: chunk_loss(q_, v_, None, lo, hi), q, v)
        return loss, gq, gv, None
    loss, (gq, gv, gh) = row_grads(lambda *x: chunk_loss(*x, lo, hi), q, v, ent)
    return loss, gq, gv, gh


# block_grad(z, lo, hi, end) -> (the loss of the terms at rows [lo, hi), ∂loss/∂z): ``z`` the fp32
# logits of rows [lo, end) (one look-ahead row except in the last chunk), which the function may
# overwrite; the returned gradient has z's shape (it may be z's own memory).
BlockGrad = Callable[[Tensor, int, int, int], tuple[Tensor, Tensor]]


def fused_head_pass(hidden, weight, bias, block_grad: BlockGrad, chunk_tokens: int, needs):
    """The chunk loop shared by every fused loss: the logits of ``chunk_tokens`` rows (plus one
    look-ahead row) at a time, ``block_grad`` turns them into the chunk's loss and logit gradient,
    and the gradients of the hidden states, weight and bias (``needs``: which of the three) are
    accumulated. Returns (total loss, grad_h, grad_w, grad_b), the gradients of the total."""
    n = hidden.shape[0]
    # in the head's dtype, as autograd accumulates a weight used in several blocks
    grad_h = torch.zeros(hidden.shape, dtype=weight.dtype, device=hidden.device)
    # written by the first block's product (zero-filling a (V, d) buffer costs a pass over it),
    # zeroed only when there are no rows; none at all for a frozen head (LoRA)
    grad_w = None
    if needs[1]:
        grad_w = torch.empty_like(weight, memory_format=torch.contiguous_format)
        if n == 0:
            grad_w.zero_()
    wide = torch.promote_types(weight.dtype, torch.float32)  # fp64 stays fp64
    grad_b = None if bias is None else torch.zeros_like(bias, dtype=wide)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for lo in range(0, n, chunk_tokens):
        hi = min(lo + chunk_tokens, n)
        end = min(hi + 1, n)  # one look-ahead row
        h = hidden[lo:end]
        # fp32 statistics of the own-dtype logits, as token_stats computes them (fp64 stays fp64)
        z = nn.functional.linear(h, weight, bias)
        loss, g = block_grad(z if z.dtype == torch.float64 else z.float(), lo, hi, end)
        if grad_b is not None and needs[2]:
            grad_b += g.sum(0)
        g = g.to(weight.dtype)
        # accumulated in place: a (V, d) temporary per block would cost as much memory
        # traffic as the product itself at a 150k vocabulary
        if needs[0]:
            grad_h[lo:end].addmm_(g, weight)
        if needs[1]:  # a frozen head (LoRA) costs no product here
            if lo == 0:
                torch.mm(g.t(), h.to(weight.dtype), out=grad_w)
            else:
                grad_w.addmm_(g.t(), h.to(weight.dtype))
        total += loss
        del z, g  # before the next block's logits exist: one block's (rows, V) tensors at a time
    return total, grad_h, grad_w, grad_b


def scaled_head_grads(ctx, grad_total: Tensor) -> tuple[Tensor | None, ...]:
    """Backward of a fused pass: the buffers kept in ``ctx.grads`` (this function's own, so scaled
    in place; the weight's gradient then becomes its .grad without a copy when fp32) times the
    incoming gradient, for the hidden states, weight and bias."""
    grad_h, grad_w, grad_b = ctx.grads
    del ctx.grads
    h_dtype, w_dtype = ctx.dtypes
    gh = grad_h.mul_(grad_total).to(h_dtype) if ctx.needs_input_grad[0] else None
    gw = grad_w.mul_(grad_total).to(w_dtype) if ctx.needs_input_grad[1] else None
    gb = None
    if grad_b is not None and ctx.needs_input_grad[2]:
        gb = (grad_b * grad_total).to(w_dtype)
    return gh, gw, gb


class _FusedHeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, actions, chunk_loss, chunk_tokens, with_entropy):
        stats = torch.zeros(3, hidden.shape[0], dtype=torch.float32, device=hidden.device)

        def block_grad(z: Tensor, lo: int, hi: int, end: int):
            a = actions[lo:end]
            q, v, ent, p = _softmax_stats(z, a, with_entropy)
            loss, gq, gv, gh = _row_grads(chunk_loss, q, v, ent, lo, hi)
            k = hi - lo
            stats[0, lo:hi], stats[1, lo:hi] = q[:k], v[:k]
            if ent is not None:
                stats[2, lo:hi] = ent[:k]
            return loss, _logit_grad(p, a, gq, gv, ent, gh)

        needs = ctx.needs_input_grad
        total, *grads = fused_head_pass(hidden, weight, bias, block_grad, chunk_tokens, needs)
        # intermediates, kept as attributes so that backward can hand the buffers over
        ctx.grads, ctx.dtypes = grads, (hidden.dtype, weight.dtype)
        ctx.mark_non_differentiable(stats)
        return total, stats

    @staticmethod
    def backward(ctx, grad_total, _grad_stats):
        return (*scaled_head_grads(ctx, grad_total), None, None, None, None)


def fused_token_loss(
    hidden: Tensor,
    actions: Tensor,
    head: nn.Linear,
    chunk_loss: ChunkLoss,
    *,
    chunk_tokens: int = 4096,
    with_entropy: bool = False,
    keep: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Σ over chunks of ``chunk_loss`` on the rows of ``hidden`` (B, T, d) flattened to B·T,
    ``actions`` (B, T) the token scored at each row, ``head`` a plain `nn.Linear` (`can_fuse`).

    ``keep`` (B, T) bool, when given: only those rows go through the head, in order (prompt and
    padding rows cost no vocabulary work); ``chunk_loss``'s row indices and look-ahead row then
    refer to the kept rows (see :func:`kept`), so keep the row after every row whose term reads it.

    ``chunk_loss`` must return the loss of its rows' terms only, each term normalised by a constant
    fixed before the call, so the chunks sum to the whole loss. Returns ``(loss, q, v, entropy)``:
    the differentiable scalar loss and the detached (B, T) fp32 statistics (entropy None unless
    ``with_entropy``; 0 at rows not kept), from which metrics are computed without another pass.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    b, t, d = hidden.shape
    rows, acts = kept(hidden.reshape(b * t, d), keep), kept(actions.reshape(b * t), keep)
    loss, stats = _FusedHeadLoss.apply(
        rows, head.weight, head.bias, acts, chunk_loss, chunk_tokens, with_entropy
    )
    if keep is not None:
        every = stats.new_zeros(3, b * t)
        every[:, keep.reshape(-1)] = stats
        stats = every
    q, v, ent = (s.reshape(b, t) for s in stats)
    return loss, q, v, (ent if with_entropy else None)


def kept(flat: Tensor, keep: Tensor | None) -> Tensor:
    """The rows of a flat (B·T, ...) tensor that ``keep`` (B, T) selects, as the fused pass sees
    them (all rows when ``keep`` is None)."""
    return flat if keep is None else flat[keep.reshape(-1)]


def action_rows(mask: Tensor, look_ahead: bool = False) -> Tensor:
    """The (B, L) rows a loss over the actions ``mask`` (B, L − 1) reads: each action's row and,
    with ``look_ahead``, the row after it (s_{t+1}, for V(s_{t+1}))."""
    none = torch.zeros_like(mask[:, :1], dtype=torch.bool)
    rows = torch.cat([mask.bool(), none], dim=1)
    return rows | torch.cat([none, rows[:, :-1]], dim=1) if look_ahead else rows


def flat_action_rows(x: Tensor) -> Tensor:
    """An action-aligned (B, L − 1) tensor as the B·L rows of the fused pass (row b·L + j scores
    a_j of sequence b): a zero/False column for the last position, which scores no action."""
    return torch.cat([x, torch.zeros_like(x[:, :1])], dim=1).reshape(-1)


def next_row(v: Tensor, k: int) -> Tensor:
    """V of the row after each of a chunk's ``k`` rows: the look-ahead row for the last one, 0
    past the end of the batch (that row scores no action, so the value is never used)."""
    if v.shape[0] > k:
        return v[1 : k + 1]
    return torch.cat([v[1:k], torch.zeros_like(v[:1])])
