"""AVA: Approximated Variational Alignment (AVA-d on demonstrations, AVA-p on preference pairs).

Cai, Yuan, Shi & Lin 2024, *Approximated Variational Bayesian Inverse Reinforcement Learning for
Large Language Model Alignment* (arXiv 2411.09341), built on AVRIL (Chan & van der Schaar 2021,
arXiv 2102.06483):

* pretrained Q (Eq. 12): Q(s, ·) = log_softmax(α·softmax(logits(s))); or a fresh Q head (Eq. 8);
* reward posterior (Eqs. 9–10): q_φ(R | ·) = 𝒩(μ, σ), prior 𝒩(0, 1), KL d_t (Eq. 6);
* reward weights (Eq. 11): w_t = the mean, over response query rows, of a softmax of the last
  layer's query–key scores over all response positions, scaling both heads' outputs (or the
  model's own causal attention, ``attn_causal``);
* TD error (Eqs. 7/14): δ_t = Q(y_{1:t}, y_{t+1}) − γ·Q(y_{1:t+1}, y_{t+2});
* AVA-d (Eqs. 5/13): F_d = Σ_t [β·Q(s_t, a_t) − d_t + λ·log q_φ(δ_t)];
* AVA-p (Eqs. 17–18): F_p = F_d-terms on y⁺ minus the likelihood term on y⁻, plus the CER term
  F_c = σ(E[R | y⁺] − E[R | y⁻]) on last-token scores;
* sequence scores: the last token's posterior mean (what F_c trains, AVA-p) or the summed
  posterior mean of the scored transitions (what F_d trains, AVA-d).

Layout (decoder-only, right padding) as in :mod:`irlalign.losses.ops`: position j of the hidden
states holds the state y_{1:j+1} (paper step t = j + 1) and predicts token j + 1, so action-aligned
tensors are (B, L − 1) and transition-aligned ones (δ, log q, KL) are (B, L − 2). Every softmax over
the vocabulary is chunked and recomputed, so no (B, L, V) tensor is ever stored; masked means use
``torch.where``, because multiplying by a 0/1 mask turns an infinite value on a pad into NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from irlalign.losses.ava_head import Eq12Head, can_use
from irlalign.losses.ops import Head
from irlalign.losses.sft import Metrics, masked_sum

LOG_2PI = math.log(2.0 * math.pi)
SIGMA_MIN = 1e-6  # floor for w·σ: w = 0 on pads would give σ = 0 and log σ = −inf


def _wide(x: Tensor) -> Tensor:
    # fp32 for half-precision inputs; fp64 stays fp64 (exact tests).
    return x if x.dtype == torch.float64 else x.float()


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return masked_sum(x, mask) / mask.sum().clamp_min(1)


def _check_shift(shift: int) -> None:
    if shift not in (0, 1):
        raise ValueError(f"shift must be 0 (literal Eq. 9) or 1 (causal), got {shift}")


def ptq_q(logits: Tensor, *, alpha: float) -> Tensor:
    """Eq. 12, unchunked reference: Q = log_softmax(α·softmax(logits)), (..., V) -> (..., V).

    Computed in fp32 (fp64 inputs stay fp64); logsumexp_v Q = 0 and every Q lies in
    [−log(|V| − 1 + e^α), α − log|V|].
    """
    return torch.log_softmax(alpha * _wide(logits).softmax(-1), dim=-1)


def _q_chunk(
    h: Tensor,
    a: Tensor,
    w: Tensor | None,
    head: Head,
    alpha: float,
    beta: float,
    ptq: bool,
    lse: bool,
) -> tuple[Tensor, ...]:
    # The only place a (rows, V) block exists.
    q = _wide(head(h))
    if ptq:
        q = ptq_q(q, alpha=alpha)
    if w is not None:
        q = q * w.to(q.dtype).unsqueeze(-1)
    q_sa = q.gather(-1, a.unsqueeze(-1)).squeeze(-1)
    return (q_sa, torch.logsumexp(beta * q, dim=-1)) if lse else (q_sa,)


def q_taken(
    hidden: Tensor,
    input_ids: Tensor,
    head: Head,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    ptq: bool = True,
    weights: Tensor | None = None,
    need_lse: bool = False,
    chunk_tokens: int = 4096,
    rows: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Q at the taken tokens: q_sa[:, j] = w_j·Q(h_j, input_ids[:, j + 1]), (B, L − 1), ≥ fp32.

    Q = ptq_q(head(h), α) (Eq. 12) if ``ptq`` else head(h) (fresh Q head, Eq. 8); ``weights``
    (B, L) scales Q row-wise (Eq. 11; the first array of :func:`head_weights`). ``lse``
    (B, L − 1) = logsumexp_v β·w_j·Q(h_j, v) when ``need_lse`` (the exact Boltzmann normaliser:
    β·Q alone is exact only for β = 1 under Eq. 12), else None. ``rows`` (B, L − 1) bool, if
    given, limits the vocabulary work to those positions (the response actions: no AVA term reads
    another); both outputs are 0 elsewhere. The selected rows are processed ``chunk_tokens`` at a
    time, recomputed in backward, so no (B, L, V) tensor exists.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    if rows is None:
        rows = torch.ones_like(input_ids[:, 1:], dtype=torch.bool)
    h, a = hidden[:, :-1][rows], input_ids[:, 1:][rows]
    w = None if weights is None else weights[:, :-1][rows]
    outs = []
    for i in range(0, h.shape[0], chunk_tokens):
        part = slice(i, i + chunk_tokens)
        wp = None if w is None else w[part]
        outs.append(_q_rows(h[part], a[part], wp, head, alpha, beta, ptq, need_lse))
    dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    cols = []
    for k in range(2 if need_lse else 1):
        flat = torch.cat([o[k] for o in outs]) if outs else hidden.new_zeros(0, dtype=dtype)
        cols.append(hidden.new_zeros(rows.shape, dtype=flat.dtype).masked_scatter(rows, flat))
    return cols[0], (cols[1] if need_lse else None)


def _q_rows(h, a, w, head, alpha, beta, ptq, need_lse) -> tuple[Tensor, ...]:
    """One block of rows: through the hand-written gradient of `ava_head` when the head is a
    plain Linear (the same numbers), else a checkpoint of the autograd composition."""
    if can_use(head):
        q_sa, lse = Eq12Head.apply(h, head.weight, head.bias, a, w, alpha, beta, ptq, need_lse)
        return (q_sa, lse) if need_lse else (q_sa,)
    args = (h, a, w, head, alpha, beta, ptq, need_lse)
    if torch.is_grad_enabled():
        return checkpoint(_q_chunk, *args, use_reentrant=False)
    return _q_chunk(*args)


RWT_FULL, RWT_CAUSAL, RWT_NONE = "attn_full", "attn_causal", "none"
RWT_MODES = (RWT_FULL, RWT_CAUSAL, RWT_NONE)


def full_reward_weights(scores: Tensor, completion_mask: Tensor, *, rescale: bool = True) -> Tensor:
    """Eq. 11 over the response: w_t = (1/|y|) Σ_{i∈y} mean_heads softmax_{t'∈y}(s_{i,t'})_t.

    ``scores`` (B, H, L, L) are the last layer's scaled query–key products s_{i,t} = q_i·k_t·c
    with no mask applied. Every response query row i is a softmax over *all* response keys t',
    earlier and later (no causal mask); prompt and pad positions are neither queries nor keys.
    Heads are averaged after the softmax, rows averaged over the response. Returns (B, L): 0
    outside the response, Σ_t w_t = 1 over it; ``rescale`` multiplies by |y| (mean weight 1).
    Not detached: gradients reach the queries and keys.
    """
    m = completion_mask.bool()
    s = _wide(scores)
    pairs = (m[:, :, None] & m[:, None, :]).unsqueeze(1)  # response query × response key
    s = s.masked_fill(~pairs, torch.finfo(s.dtype).min)  # finite, so no NaN even in dropped rows
    rows = torch.where(m[:, :, None], s.softmax(-1).mean(1), 0.0)  # (B, L_query, L_key)
    n = m.sum(1, keepdim=True).clamp_min(1).to(rows.dtype)
    w = torch.where(m, rows.sum(1) / n, 0.0)
    return w * n if rescale else w


def causal_reward_weights(attn: Tensor, attention_mask: Tensor, *, rescale: bool = True) -> Tensor:
    """Eq. 11 read through the model's own causal attention: w_t = (1/n) Σ_{i valid} mean_heads
    attn[:, :, i, t], (B, H, L, L) -> (B, L), over every valid position (prompt included).

    ``attn`` is the post-softmax last-layer self-attention (not detached), so row i covers only
    t ≤ i and the last position's weight is its self-attention / n. Padded query rows are
    dropped; w = 0 on pads and Σ_t w_t = 1 over valid tokens (= n with ``rescale``, mean 1).
    """
    m = attention_mask.bool()
    rows = torch.where(m.unsqueeze(-1), _wide(attn).mean(1), 0.0)
    n = m.sum(1, keepdim=True).clamp_min(1).to(rows.dtype)
    w = torch.where(m, rows.sum(1) / n, 0.0)
    return w * n if rescale else w


def head_weights(
    attn: Tensor | None,
    attention_mask: Tensor,
    completion_mask: Tensor,
    *,
    rwt: str = RWT_FULL,
    rescale: bool = True,
    shift: int = 1,
) -> tuple[Tensor | None, Tensor | None]:
    """The reward weights as the two heads are read: (weights of the Q rows, weights of the
    (μ, σ) positions), each (B, L), for :func:`q_taken` and :func:`ava_token_terms`.

    ``attn_full``: w_k belongs to response token k, and everything about generating token k is
    multiplied by it: its Q value, read at the state before it (row k − 1), and its reward
    posterior, read at k (``shift=1``) or k − 1 (``shift=0``). ``attn_causal``: the causal
    weights multiply whatever is read at their own position. ``none``: (None, None).
    """
    _check_shift(shift)
    if rwt == RWT_NONE:
        return None, None
    if attn is None:
        raise ValueError(f"rwt={rwt!r} needs the last layer's attention")
    if rwt == RWT_CAUSAL:
        w = causal_reward_weights(attn, attention_mask, rescale=rescale)
        return w, w
    if rwt != RWT_FULL:
        raise ValueError(f"rwt must be one of {RWT_MODES}, got {rwt!r}")
    w = full_reward_weights(attn, completion_mask, rescale=rescale)
    before = F.pad(w[:, 1:], (0, 1))  # position k − 1 carries token k's weight
    return before, (w if shift == 1 else before)


def gaussian_log_density(x: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """log 𝒩(x; μ, σ) = −½ log 2π − log σ − (x − μ)² / (2σ²)."""
    return -0.5 * LOG_2PI - torch.log(sigma) - 0.5 * ((x - mu) / sigma).pow(2)


def kl_to_std_normal(mu: Tensor, sigma: Tensor) -> Tensor:
    """Eq. 6: D_KL[𝒩(μ, σ) ‖ 𝒩(0, 1)] = ½(μ² + σ² − 1) − log σ."""
    return 0.5 * (mu.pow(2) + sigma.pow(2) - 1.0) - torch.log(sigma)


@dataclass
class AVATerms:
    """Per-token AVA quantities of one batch; index j is paper step t = j + 1.

    ``ll`` β·q_sa or β·q_sa − lse, (B, L − 1) [(B, L − 2) under the paper range], ``ll_mask`` its
    bool mask; ``logq`` log q_φ(δ_j), ``kl`` d_j, ``td_mask`` interior transitions (both actions
    response tokens), ``delta`` δ_j = q_sa[:, j] − γ·q_sa[:, j + 1], all (B, L − 2); ``mu``,
    ``sigma`` (B, L) after rwt scaling (σ ≥ 1e-6 when scaled): pass ``mu`` to the scores;
    ``mu_td``, ``sigma_td`` (B, L − 2) the (μ, σ) each transition is scored under (shifted read).
    """

    ll: Tensor
    ll_mask: Tensor
    logq: Tensor
    kl: Tensor
    td_mask: Tensor
    delta: Tensor
    mu: Tensor
    sigma: Tensor
    mu_td: Tensor
    sigma_td: Tensor


def log_likelihood(q_sa: Tensor, lse: Tensor | None, beta: float) -> Tensor:
    """ll_j = β·q_sa_j (Eq. 13), or β·q_sa_j − lse_j with the exact Boltzmann normaliser."""
    return beta * q_sa if lse is None else beta * q_sa - lse


def ava_token_terms(
    q_sa: Tensor,
    mu: Tensor,
    sigma: Tensor,
    completion_mask: Tensor,
    *,
    beta: float = 1.0,
    gamma: float = 1.0,
    shift: int = 1,
    weights: Tensor | None = None,
    lse: Tensor | None = None,
    paper_ll_range: bool = False,
) -> AVATerms:
    """Per-token terms of Eqs. 5–7/13–14 from q_sa (B, L − 1) (w-scaled by :func:`q_taken`) and
    raw reward-head outputs μ, σ (B, L); ``completion_mask`` (B, L) 1 on response tokens.

    Rwt: (μ, σ) <- (w·μ, max(w·σ, 1e-6)) (Eq. 11; ``weights`` the second array of
    :func:`head_weights`). ll_j = β·q_sa_j (Eq. 13), or β·q_sa_j − lse_j
    with ``lse`` (exact Boltzmann). δ_j (Eq. 7) is scored under (μ, σ) at position j + shift:
    ``shift=1`` reads the reward of y_{1:t+1} at h_{t+1}, after the token is seen; ``shift=0``
    at h_t, the literal Eq. 9 reading. Likelihood on every response action, or on interior
    transitions only with ``paper_ll_range`` (the paper's literal t = 1..|y| − 2).
    """
    _check_shift(shift)
    if weights is not None:
        mu, sigma = mu * weights, (sigma * weights).clamp_min(SIGMA_MIN)
    act = completion_mask[:, 1:].bool()
    ll = log_likelihood(q_sa, lse, beta)
    delta = q_sa[:, :-1] - gamma * q_sa[:, 1:]
    td_mask = act[:, :-1] & act[:, 1:]
    n = delta.shape[1]
    mu_td, sigma_td = mu[:, shift : shift + n], sigma[:, shift : shift + n]
    logq = gaussian_log_density(delta, mu_td, sigma_td)
    kl = kl_to_std_normal(mu_td, sigma_td)
    ll, ll_mask = (ll[:, :-1], td_mask) if paper_ll_range else (ll, act)
    return AVATerms(ll, ll_mask, logq, kl, td_mask, delta, mu, sigma, mu_td, sigma_td)


def _likelihood(terms: AVATerms) -> Tensor:
    return _masked_mean(terms.ll, terms.ll_mask)


def _irl(terms: AVATerms, lam: float) -> Tensor:
    # λ·mean log q_φ(δ) − mean d: the TD constraint and the KL to the prior, one sequence set.
    return lam * _masked_mean(terms.logq, terms.td_mask) - _masked_mean(terms.kl, terms.td_mask)


def ava_d_loss(terms: AVATerms, *, lam: float = 1.0) -> tuple[Tensor, Metrics]:
    """−F_d (Eqs. 5/13), token means: L = −(mean_ll ll − mean_td d + λ·mean_td log q_φ(δ)).

    Metrics (objective parts, unsigned): ``loss/likelihood`` mean ll (maximised), ``loss/kl`` mean
    d (minimised), ``loss/td_logq`` mean log q (maximised), so ``loss/total`` = −(likelihood − kl +
    λ·td_logq); ``reward/mu_mean``, ``reward/sigma_mean`` over the TD-scored (μ, σ).
    """
    lik = _likelihood(terms)
    kl = _masked_mean(terms.kl, terms.td_mask)
    logq = _masked_mean(terms.logq, terms.td_mask)
    loss = -(lik - kl + lam * logq)
    metrics = {"loss/total": loss, "loss/likelihood": lik, "loss/kl": kl, "loss/td_logq": logq}
    metrics["reward/mu_mean"] = _masked_mean(terms.mu_td, terms.td_mask)
    metrics["reward/sigma_mean"] = _masked_mean(terms.sigma_td, terms.td_mask)
    return loss, {k: v.detach() for k, v in metrics.items()}


def ava_p_loss(
    chosen: AVATerms,
    rejected: AVATerms,
    chosen_score: Tensor,
    rejected_score: Tensor,
    *,
    lam: float = 1.0,
    cer_coef: float = 1.0,
    td_on_rejected: bool = True,
    cer_log: bool = False,
    use_neg: bool = True,
    use_irl: bool = True,
) -> tuple[Tensor, Metrics]:
    """−(F_p + c·F_c) (Eqs. 17–18); token means per term, pair mean for CER.

    In the paper the per-token terms are sums over tokens while CER has one term per pair; their
    normalisation, which the paper leaves open, sets their relative weight (``cer_coef`` on top).

    F_lik = mean ll⁺ − mean ll⁻ (the second term dropped by ``use_neg=False``, "w/o neg");
    F_irl = λ·mean log q⁺ − mean d⁺ [+ the same on y⁻ if ``td_on_rejected``] (0 for "w/o irl");
    F_cer = mean_b σ(s⁺ − s⁻) (log σ with ``cer_log``), s the (B,) last-token scores.
    Metrics: ``loss/total``, ``loss/likelihood``, ``loss/irl``, ``loss/cer`` (F_lik, F_irl,
    F_cer), ``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracy``, ``rewards/margin``.
    """
    f_lik = _likelihood(chosen) - (_likelihood(rejected) if use_neg else 0.0)
    f_irl = chosen.ll.new_zeros(())  # "w/o irl" keeps only the likelihood and CER terms
    if use_irl:
        f_irl = _irl(chosen, lam) + (_irl(rejected, lam) if td_on_rejected else 0.0)
    d = chosen_score - rejected_score
    f_cer = (F.logsigmoid(d) if cer_log else torch.sigmoid(d)).mean()
    loss = -(f_lik + f_irl + cer_coef * f_cer)
    metrics = {"loss/total": loss, "loss/likelihood": f_lik, "loss/irl": f_irl, "loss/cer": f_cer}
    metrics["rewards/chosen"] = chosen_score.mean()
    metrics["rewards/rejected"] = rejected_score.mean()
    metrics["rewards/accuracy"] = (d > 0).float().mean()
    metrics["rewards/margin"] = d.mean()
    return loss, {k: v.detach() for k, v in metrics.items()}


def last_token_score(mu: Tensor, attention_mask: Tensor, *, shift: int = 1) -> Tensor:
    """E_q[R | y] of the final token (Eq. 18), (B, L) -> (B,), right padding: the posterior mean
    read at the last non-pad position with ``shift=1`` and one position earlier with ``shift=0``
    (where the reward of the final token sits, as in :func:`token_rewards`).

    The score AVA-p's contrastive term trains. Pass the rwt-scaled ``AVATerms.mu`` (w_T·μ_T)."""
    _check_shift(shift)
    last = (attention_mask.long().sum(1) - 1 - (1 - shift)).clamp_min(0)
    return mu.gather(1, last.unsqueeze(1)).squeeze(1)


def summed_score(mu: Tensor, completion_mask: Tensor, *, shift: int = 1) -> Tensor:
    """Σ_k r_k over the response tokens k that are followed by another response token, (B,):
    the summed posterior mean of exactly the transitions AVA-d scores (its TD and KL terms),
    = Σ_j μ_td[j] over ``td_mask``; r_k as in :func:`token_rewards`.

    The final token has no transition (no terminal one is added), so AVA-d never trains its
    posterior and it is left out. Pass the rwt-scaled ``AVATerms.mu`` (Σ w_k·μ_k)."""
    cm = completion_mask.bool()
    scored = cm & F.pad(cm[:, 1:], (0, 1), value=False)
    r = token_rewards(mu, completion_mask, shift=shift)
    return torch.where(scored, r, torch.zeros_like(r)).sum(1)


def token_rewards(mu: Tensor, completion_mask: Tensor, *, shift: int = 1) -> Tensor:
    """Dense reward r_k for generating token k, (B, L), 0 outside the response:
    r_k = μ_k with ``shift=1`` and μ_{k−1} with ``shift=0``. Pass the rwt-scaled ``AVATerms.mu``."""
    _check_shift(shift)
    r = mu if shift == 1 else F.pad(mu[:, :-1], (1, 0))
    return torch.where(completion_mask.bool(), r, torch.zeros_like(r))
