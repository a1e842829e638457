"""AVA's Q at the taken token and its Boltzmann normaliser, one vocabulary block at a time, with
the gradient written out by hand.

Cai et al. 2024 (arXiv 2411.09341), Eq. 12: Q(s, ·) = log_softmax(α·softmax(z)), z the output
head's logits (``ptq``), or Q = z for a fresh Q head (Eq. 8); per row a weight w (Eq. 11, 1 when
unweighted). Outputs per row: q_sa = w·Q_a and lse = logsumexp_v β·w·Q_v.

Through autograd, the composition keeps several (rows, V) intermediates per block and replays
them in backward. Here the forward keeps nothing of the block (like a checkpoint, the backward
recomputes z with one product) and the backward evaluates the chain rule in two passes over
one block. With u = α·softmax(z), c = logsumexp u, Q = u − c, π = softmax(u) = e^Q and
ρ = softmax(β·w·Q), for upstream gradients g₁ (q_sa) and g₂ (lse):

    ∂L/∂Q_v = g₁·w·[v = a] + g₂·β·w·ρ_v,        ∂L/∂w = g₁·Q_a + g₂·β·Σ_v ρ_v·Q_v,
    ∂L/∂u_v = ∂L/∂Q_v − π_v·(g₁·w + g₂·β·w),    ∂L/∂z_v = u_v·(∂L/∂u_v − Σ_k u_k·∂L/∂u_k / α)

(the last line is the softmax Jacobian with p = u/α); without ``ptq``, ∂L/∂z = ∂L/∂Q.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from irlalign.losses.fused import fused_head_pass, row_grads, scaled_head_grads


def _wide(x: Tensor) -> Tensor:
    return x if x.dtype == torch.float64 else x.float()


def _u(z: Tensor, alpha: float, ptq: bool) -> tuple[Tensor, Tensor]:
    """u (rows, V) and c (rows,) of a logits block, in z's memory when it is already wide:
    u = α·softmax(z), c = logsumexp u (ptq); else u = z, c = 0."""
    u = _wide(z)
    if not ptq:
        return u, torch.zeros_like(u[:, 0])
    u = u.sub_(u.amax(-1, keepdim=True)).exp_()
    u = u.mul_(alpha / u.sum(-1, keepdim=True))
    return u, torch.logsumexp(u, dim=-1)


def _block(h: Tensor, weight: Tensor, bias: Tensor | None, alpha: float, ptq: bool):
    return _u(nn.functional.linear(h, weight, bias), alpha, ptq)


def eq12_stats(u: Tensor, c: Tensor, a: Tensor, w: Tensor | None, beta: float, need_lse: bool):
    """(q_sa, lse) of a block: q_sa = w·Q_a, lse = logsumexp_v β·w·Q_v (empty unless
    ``need_lse``), Q = u − c."""
    ww = torch.ones_like(c) if w is None else w.to(c.dtype)
    q_sa = ww * (u.gather(-1, a.unsqueeze(-1)).squeeze(-1) - c)
    lse = c.new_zeros(0)
    if need_lse:
        bw = beta * ww
        lse = torch.logsumexp(u * bw.unsqueeze(-1), dim=-1) - bw * c
    return q_sa, lse


def eq12_grads(u, c, a, w, lse, g1, g2, args) -> tuple[Tensor, Tensor]:
    """(∂L/∂z, ∂L/∂w) of a block from the row gradients g₁ of q_sa and g₂ of lse (either may be
    None), by the chain rule in the module docstring; ``args`` (α, β, ptq, need_lse). ``u`` is
    left unchanged; the returned ∂L/∂z is a new (rows, V) fp32 (or fp64) tensor."""
    alpha, beta, ptq, need_lse = args
    ww = torch.ones_like(c) if w is None else w.to(c.dtype)
    g1 = torch.zeros_like(c) if g1 is None else g1.to(c.dtype)
    q_a = u.gather(-1, a.unsqueeze(-1)).squeeze(-1) - c
    grad_w = g1 * q_a
    total = g1 * ww  # Σ_v ∂L/∂Q_v
    if need_lse and g2 is not None:
        bw = beta * ww
        g2 = g2.to(c.dtype)
        rho = (u - c.unsqueeze(-1)).mul_(bw.unsqueeze(-1)).sub_(lse.unsqueeze(-1)).exp_()
        # Σ_v ρ_v (u_v − c) as Σ ρ·u − c·Σ ρ: no (rows, V) temporaries
        grad_w = grad_w + g2 * beta * (_row_dot(rho, u) - c * rho.sum(-1))
        grad = rho.mul_((g2 * bw).unsqueeze(-1))  # ∂L/∂Q without the taken-token term
        total = total + g2 * bw
        if ptq:
            grad.sub_(_softmax_q(u, c).mul_(total.unsqueeze(-1)))
    elif ptq:  # only the taken-token term and the normaliser's: one (rows, V) pass fewer
        grad = _softmax_q(u, c).mul_(-total.unsqueeze(-1))
    else:
        grad = torch.zeros_like(u)
    grad.scatter_add_(-1, a.unsqueeze(-1), (g1 * ww).unsqueeze(-1))
    if ptq:  # through Q = u − logsumexp u (above: ∂L/∂u = ∂L/∂Q − π·Σ ∂L/∂Q), then u = α·softmax(z)
        s = _row_dot(u, grad).unsqueeze(-1) / alpha
        grad = grad.sub_(s).mul_(u)
    return grad, grad_w


def _row_dot(x: Tensor, y: Tensor) -> Tensor:
    """Σ_v x_v·y_v per row, as a batched product: no (rows, V) temporary for x·y."""
    return (x.unsqueeze(-2) @ y.unsqueeze(-1)).reshape(x.shape[:-1])


def _softmax_q(u: Tensor, c: Tensor) -> Tensor:
    """π = e^Q = softmax(u), a new (rows, V) tensor."""
    return (u - c.unsqueeze(-1)).exp_()


class Eq12Head(torch.autograd.Function):
    """(h, W, b, a, w) -> (q_sa, lse); ``w`` may be None (unweighted), ``lse`` computed only when
    ``need_lse`` (else an empty tensor)."""

    @staticmethod
    def forward(ctx, h, weight, bias, a, w, alpha, beta, ptq, need_lse):
        u, c = _block(h, weight, bias, alpha, ptq)
        q_sa, lse = eq12_stats(u, c, a, w, beta, need_lse)
        ctx.save_for_backward(h, weight, bias, a, w, lse)
        ctx.args = (alpha, beta, ptq, need_lse)
        return q_sa, lse

    @staticmethod
    def backward(ctx, g1, g2):
        h, weight, bias, a, w, lse = ctx.saved_tensors
        u, c = _block(h, weight, bias, ctx.args[0], ctx.args[2])
        grad, grad_w = eq12_grads(u, c, a, w, lse, g1, g2, ctx.args)
        dz = grad.to(weight.dtype)
        gh = (dz @ weight).to(h.dtype) if ctx.needs_input_grad[0] else None
        gw = dz.t() @ h.to(weight.dtype) if ctx.needs_input_grad[1] else None
        gb = dz.sum(0) if bias is not None and ctx.needs_input_grad[2] else None
        gwt = grad_w.to(w.dtype) if w is not None and ctx.needs_input_grad[4] else None
        return gh, gw, gb, None, gwt, None, None, None, None


# chunk_loss(q_sa, lse, lo, hi) -> the loss of the terms at rows [lo, hi); q_sa and lse (None
# unless need_lse) cover rows [lo, min(hi + 1, n)): one look-ahead row except in the last chunk.
Eq12ChunkLoss = Callable[[Tensor, Tensor | None, int, int], Tensor]


class FusedEq12Loss(torch.autograd.Function):
    """(h, W, b, a, w) -> (Σ_chunks chunk_loss, stats (2, rows): q_sa and lse, detached) through
    :func:`~irlalign.losses.fused.fused_head_pass`: each block's gradient is computed in forward
    (three vocabulary products per block instead of the checkpointed head's four)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, actions, w, chunk_loss, chunk_tokens, args):
        beta, need_lse = args[1], args[3]
        wide = torch.float64 if hidden.dtype == torch.float64 else torch.float32
        stats = torch.zeros(2, hidden.shape[0], dtype=wide, device=hidden.device)
        grad_wt = None if w is None else torch.zeros_like(stats[0])

        def block_grad(z: Tensor, lo: int, hi: int, end: int):
            a, wb, k = actions[lo:end], (None if w is None else w[lo:end]), hi - lo
            u, c = _u(z, args[0], args[2])
            q_sa, lse = eq12_stats(u, c, a, wb, beta, need_lse)
            if need_lse:
                loss, g = row_grads(lambda q, s: chunk_loss(q, s, lo, hi), q_sa, lse)
                stats[1, lo:hi] = lse[:k]
            else:
                loss, g = row_grads(lambda q: chunk_loss(q, None, lo, hi), q_sa)
            stats[0, lo:hi] = q_sa[:k]
            grad, gw = eq12_grads(u, c, a, wb, lse, g[0], g[1] if need_lse else None, args)
            if grad_wt is not None:
                grad_wt[lo:end] += gw
            return loss, grad

        total, *grads = fused_head_pass(
            hidden, weight, bias, block_grad, chunk_tokens, ctx.needs_input_grad
        )
        ctx.grads, ctx.dtypes, ctx.grad_wt = grads, (hidden.dtype, weight.dtype), grad_wt
        ctx.w_dtype = None if w is None else w.dtype
        ctx.mark_non_differentiable(stats)
        return total, stats

    @staticmethod
    def backward(ctx, grad_total, _grad_stats):
        gh, gw, gb = scaled_head_grads(ctx, grad_total)
        gwt = None
        if ctx.grad_wt is not None and ctx.needs_input_grad[4]:
            gwt = ctx.grad_wt.mul_(grad_total).to(ctx.w_dtype)
        return gh, gw, gb, None, gwt, None, None, None


def can_use(head: object) -> bool:
    """The hand-written gradient needs the head's weight: a plain, unsharded `nn.Linear`."""
    return type(head) is nn.Linear and head.weight.dim() == 2
