"""AVA's objective with Eq. 12's head in one fused pass over the vocabulary.

AVA reads the vocabulary only through two per-action statistics, q_sa = w·Q(s, a) and the
Boltzmann normaliser lse (:func:`~irlalign.losses.ava.q_taken`), and its objectives (−F_d, −F_p)
are linear in the per-token terms built from them: ll_j = β·q_sa_j [− lse_j] and the TD
log-density log q_φ(δ_j) with δ_j = q_sa_j − γ·q_sa_{j+1}. So the gradient of the objective with
respect to each block's logits is known as soon as the block and one look-ahead row are computed,
given the per-term coefficients ∂L/∂ll_j and ∂L/∂log q_j (constants) and the reward posterior
(μ, σ), which the reward head gives before the pass. The block's head gradients are then formed in
forward (:class:`~irlalign.losses.ava_head.FusedEq12Loss`): three vocabulary products per block
instead of four.

The coefficients are read off the objective itself by differentiating it at placeholder terms, so
any objective built from :class:`~irlalign.losses.ava.AVATerms` by masked means and sums gets the
same gradient as through the checkpointed head (tested against it, values and gradients).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irlalign.losses.ava import AVATerms, ava_token_terms, gaussian_log_density, log_likelihood
from irlalign.losses.ava_head import FusedEq12Loss
from irlalign.losses.fused import next_row
from irlalign.losses.sft import Metrics

# objective(terms) -> (loss, metrics); must be linear in terms.ll and terms.logq
Objective = Callable[[AVATerms], tuple[Tensor, Metrics]]


@dataclasses.dataclass
class TermRules:
    """How :func:`~irlalign.losses.ava.ava_token_terms` builds the terms (its keyword arguments),
    and Eq. 12's head: α, ``ptq`` and ``need_lse`` as in :func:`~irlalign.losses.ava.q_taken`."""

    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    shift: int = 1
    ptq: bool = True
    need_lse: bool = False
    paper_ll_range: bool = False

    def terms(self, q_sa, mu, sigma, completion_mask, weights, lse) -> AVATerms:
        return ava_token_terms(
            q_sa,
            mu,
            sigma,
            completion_mask,
            beta=self.beta,
            gamma=self.gamma,
            shift=self.shift,
            weights=weights,
            lse=lse,
            paper_ll_range=self.paper_ll_range,
        )


def _on_grid(x: Tensor, width: int, value: float = 0.0) -> Tensor:
    """A (B, L − 2) or (B, L − 1) tensor padded on the right to the (B, L − 1) action grid."""
    return F.pad(x, (0, width - x.shape[1]), value=value)


def term_coefficients(objective: Objective, probe: AVATerms, width: int) -> tuple[Tensor, Tensor]:
    """(∂L/∂ll, ∂L/∂log q) of an objective linear in both, each on the (B, ``width``) action
    grid, from ``probe`` (terms of the batch's shapes and masks; their values are not read)."""
    ll = probe.ll.detach().requires_grad_()
    logq = probe.logq.detach().requires_grad_()
    with torch.enable_grad():
        loss, _ = objective(dataclasses.replace(probe, ll=ll, logq=logq))
        grads = torch.autograd.grad(loss, [ll, logq], allow_unused=True)
    pairs = zip(grads, (ll, logq), strict=True)
    g_ll, g_td = (torch.zeros_like(x) if g is None else g for g, x in pairs)
    return _on_grid(g_ll, width), _on_grid(g_td, width)


def _chunk_loss(rows: list[Tensor], rules: TermRules):
    """The objective's q-dependent part on the fused pass's rows [lo, hi) (the selected response
    actions, flattened in order, so a transition's second action is the next row): Σ ∂L/∂ll·ll +
    ∂L/∂log q·log q_φ(δ) under the detached posterior ``rows`` = (coef_ll, coef_td, td, μ, σ)."""
    c_ll, c_td, td, mu, sigma = rows

    def chunk(q_sa: Tensor, lse: Tensor | None, lo: int, hi: int) -> Tensor:
        k = hi - lo
        q, t, m = q_sa[:k], td[lo:hi], mu[lo:hi]
        ll = log_likelihood(q, None if lse is None else lse[:k], rules.beta)
        delta = q - rules.gamma * next_row(q_sa, k)
        # δ = μ off the transitions: a finite density that the mask then drops
        logq = gaussian_log_density(torch.where(t, delta, m), m, sigma[lo:hi])
        return (c_ll[lo:hi] * ll).sum() + (c_td[lo:hi] * torch.where(t, logq, 0.0)).sum()

    return chunk


def _row_inputs(objective: Objective, rules: TermRules, probe: AVATerms, sel: Tensor):
    """What the chunk loss reads per selected action: ∂L/∂ll, ∂L/∂log q, whether it starts a
    scored transition, and that transition's (detached) posterior μ, σ."""
    width = sel.shape[1]
    coefs = term_coefficients(objective, probe, width)
    posterior = (_on_grid(probe.mu_td, width), _on_grid(probe.sigma_td, width, 1.0))
    return [x[sel] for x in (*coefs, _on_grid(probe.td_mask, width), *posterior)]


def fused_ava_loss(
    hidden: Tensor,
    input_ids: Tensor,
    completion_mask: Tensor,
    head: nn.Linear,
    reward: tuple[Tensor, Tensor],
    objective: Objective,
    rules: TermRules,
    *,
    weights: tuple[Tensor | None, Tensor | None] = (None, None),
    chunk_tokens: int = 4096,
) -> tuple[Tensor, Metrics, AVATerms]:
    """``objective`` of the terms :func:`~irlalign.losses.ava.q_taken` and ``rules.terms`` would
    build, with its gradient, from one fused pass: ``hidden`` (B, L, d), ``reward`` the raw
    (μ, σ) (B, L) of the reward head, ``weights`` the two arrays of
    :func:`~irlalign.losses.ava.head_weights`, ``head`` a plain `nn.Linear` (``can_use``).
    Returns (loss, metrics, terms); the terms' q_sa and lse are detached."""
    (mu, sigma), (q_weights, r_weights) = reward, weights
    dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    zeros = hidden.new_zeros(input_ids[:, 1:].shape, dtype=dtype)
    sel = completion_mask[:, 1:].bool()
    rows = _row_inputs(objective, rules, rules.terms(
        zeros, mu.detach(), sigma.detach(), completion_mask,
        None if r_weights is None else r_weights.detach(), zeros if rules.need_lse else None,
    ), sel)  # fmt: skip
    w = None if q_weights is None else q_weights[:, :-1][sel]
    args = (rules.alpha, rules.beta, rules.ptq, rules.need_lse)
    h, a, chunk = hidden[:, :-1][sel], input_ids[:, 1:][sel], _chunk_loss(rows, rules)
    s, stats = FusedEq12Loss.apply(h, head.weight, head.bias, a, w, chunk, chunk_tokens, args)
    q_sa = zeros.masked_scatter(sel, stats[0])
    lse = zeros.masked_scatter(sel, stats[1]) if rules.need_lse else None
    terms = rules.terms(q_sa, mu, sigma, completion_mask, r_weights, lse)
    loss, metrics = objective(terms)
    # the objective's value with q detached (its gradient reaches μ, σ and the reward weights),
    # plus the fused pass's gradient for everything that reaches Q (value 0 added)
    return loss + (s - s.detach()), metrics, terms
