"""AVA: approximated variational Bayesian IRL with token-level Gaussian reward posteriors.

Cai et al. 2024, *Approximated Variational Bayesian Inverse Reinforcement Learning for Large
Language Model Alignment* (arXiv 2411.09341): AVA-d (Eq. 13) on demonstrations, AVA-p with the
contrastive expected return (Eqs. 17–18) on preferences. One trainer serves two of the paper's
uses: on a small LM it is a reward model (the Gaussian head is what is kept), on the policy LM it
is direct optimisation (the LM is decoded normally afterwards). Defaults follow the paper; where
it gives no value, α = 1 and the AVRIL code's β = λ = γ = 1; where it is ambiguous, the field's
comment says which reading is the default. Every ablation of Table 1 is a field below.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from transformers import Trainer

from irlalign.data.collate import SEQUENCE_FIELDS
from irlalign.losses.ava import (
    RWT_CAUSAL,
    RWT_MODES,
    RWT_NONE,
    AVATerms,
    ava_d_loss,
    ava_p_loss,
    head_weights,
    last_token_score,
    q_taken,
    summed_score,
)
from irlalign.losses.ava_fused import Objective, TermRules, fused_ava_loss
from irlalign.losses.ava_head import can_use
from irlalign.modeling.attention import use_causal_weights_attention, use_scores_attention
from irlalign.modeling.forward import chunk_rows, forward_hidden, unwrap
from irlalign.modeling.heads import GaussianRewardHead, LinearQHead, attach_head, get_head
from irlalign.trainers.common import MethodEvalMixin, MetricStore, stack_pairs
from irlalign.trainers.heads import HeadsCheckpointMixin
from irlalign.trainers.raw_rows import TextRowsMixin

REWARD_HEAD, Q_HEAD = "reward", "q"
CHOICES = {"q_head": ("ptq", "fresh"), "ll_range": ("all", "paper"), "rwt": RWT_MODES}


@dataclass
class AVAConfig:
    alpha: float = 1.0  # α, probability -> Q temperature of "ptq" (Eq. 12)
    beta: float = 1.0  # β, Boltzmann rationality (Eq. 3); not DPO's β
    gamma: float = 1.0  # γ in δ_t = Q(s, a) − γ Q(s', a') (Eq. 7)
    lam: float = 1.0  # λ, weight of the TD log-density term
    q_head: str = "ptq"  # "ptq" (Eq. 12 on the LM head) or "fresh" (ablation "w/o ptq")
    exact_boltzmann: bool | None = None  # None = auto: on iff β ≠ 1 or q_head == "fresh"
    # 1: the reward of y_{1:t+1} is read at h_{t+1}, after the token is seen; 0: literal Eq. 9,
    # read at h_t
    shift: int = 1
    ll_range: str = "all"  # "all" response actions, or "paper": the literal t = 1..|y|−2
    # reward weights (Eq. 11): "attn_full", each response token's mean share of a softmax of the
    # last layer's query-key scores over all response positions; "attn_causal", the model's own
    # causal last-layer attention (weights over prompt and response); or "none" ("w/o rwt")
    rwt: str = "attn_full"
    # true: the weights average 1 over the positions they cover. false: they sum to 1, Eq. 11's
    # literal scale, which shrinks μ and σ by about 1/|y| and so cannot be what the paper's
    # ablation (weights help) trained. Synthetic benchmark, seeds 0-2, pairwise accuracy:
    # attn_full mean 1 0.544, attn_full Σw=1 0.572, attn_causal mean 1 0.658, attn_causal Σw=1
    # 0.502 (Bradley–Terry 0.696); docs/methods/ava.md
    rwt_rescale: bool = True
    td_on_rejected: bool = True  # TD/KL terms on rejected sequences too (the paper is ambiguous)
    use_neg: bool = True  # ablation "w/o neg": drop −βQ(y⁻)
    use_irl: bool = True  # ablation "w/o irl": drop TD and KL terms
    cer_coef: float = 1.0  # weight of the contrastive expected return (0 = "w/o cer")
    # log σ(Δ) instead of Eq. 18's literal σ(Δ), which saturates on badly mis-ordered pairs
    cer_log: bool = False
    chosen_only: bool = False  # preference data: AVA-d on the chosen half (Table 1 last row)
    # rows per vocabulary chunk; None: sized by V (chunk_rows), halved in the fused pass, which
    # holds two (rows, V) blocks at once
    chunk_tokens: int | None = None
    # training: Eq. 12's head and its gradient in one pass over the vocabulary (three products
    # per chunk instead of four; the same numbers) when the Q head is a plain linear layer
    fused_head: bool = True

    def __post_init__(self) -> None:
        if self.rwt == "attn":
            raise ValueError(
                "rwt 'attn' was split in two: use 'attn_full' (the default, a softmax over all "
                "response positions) or 'attn_causal' (what 'attn' meant: the causal attention)"
            )
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.shift not in (0, 1):
            raise ValueError("shift must be 0 or 1")
        if not 0 < self.gamma <= 1:
            raise ValueError("gamma must be in (0, 1]")
        if self.alpha <= 0 or self.beta <= 0:
            raise ValueError("alpha and beta must be > 0")
        if self.lam < 0 or self.cer_coef < 0:
            raise ValueError("lam and cer_coef must be >= 0")
        if self.chunk_tokens is not None and self.chunk_tokens < 1:
            raise ValueError("chunk_tokens must be >= 1 or None")

    @property
    def exact(self) -> bool:
        if self.exact_boltzmann is not None:
            return self.exact_boltzmann
        return self.beta != 1.0 or self.q_head == "fresh"


def attach_ava_heads(model: torch.nn.Module, cfg: AVAConfig) -> None:
    """The TQR heads (Eqs. 8–9) on a causal LM, and an attention implementation that returns
    what the reward weights read: the last layer's causal weights (``attn_causal``) or raw scores
    (``attn_full``); every other layer keeps SDPA."""
    base = unwrap(model)
    d = base.config.hidden_size
    head = GaussianRewardHead(d, cfg.shift, cfg.rwt, cfg.rwt_rescale, score=sequence_score(cfg))
    attach_head(model, REWARD_HEAD, head)
    if cfg.q_head == "fresh":
        vocab = base.get_output_embeddings().weight.shape[0]
        attach_head(model, Q_HEAD, LinearQHead(d, vocab))
        freeze_untied_lm_head(base)
    if cfg.rwt == RWT_CAUSAL:
        use_causal_weights_attention(base)
    elif cfg.rwt != RWT_NONE:
        use_scores_attention(base)


def sequence_score(cfg: AVAConfig, demonstrations: bool = False) -> str:
    """The reward model's sequence score, the one its objective trains: AVA-d (demonstrations,
    or ``chosen_only``) trains no last-token posterior, so it is scored by the summed posterior
    mean (`summed_score`); AVA-p's contrastive term trains the last token's (`last_token_score`)."""
    return "sum" if demonstrations or cfg.chosen_only else "last"


def freeze_untied_lm_head(base) -> None:
    """An output head the loss never reads gets no gradient; freeze it (DDP needs that) unless
    it is tied to the input embeddings, which the loss does use."""
    head = base.get_output_embeddings()
    if head.weight is not base.get_input_embeddings().weight:
        head.requires_grad_(False)


def term_rules(cfg: AVAConfig) -> TermRules:
    return TermRules(
        alpha=cfg.alpha,
        beta=cfg.beta,
        gamma=cfg.gamma,
        shift=cfg.shift,
        ptq=cfg.q_head == "ptq",
        need_lse=cfg.exact,
        paper_ll_range=cfg.ll_range == "paper",
    )


def _tqr_forward(model: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: AVAConfig):
    """One forward: hidden states, the Q head, the reward weights and the raw (μ, σ)."""
    ids, am, cm = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    hidden, lm_head, attn = forward_hidden(model, ids, am, attentions=cfg.rwt != RWT_NONE)
    weights = head_weights(attn, am, cm, rwt=cfg.rwt, rescale=cfg.rwt_rescale, shift=cfg.shift)
    head = get_head(model, Q_HEAD) if cfg.q_head == "fresh" else lm_head
    return hidden, head, weights, get_head(model, REWARD_HEAD)(hidden)


def tqr_terms(model: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: AVAConfig) -> AVATerms:
    """One TQR forward on a right-padded causal batch, through the checkpointed Q head."""
    return _checkpointed_terms(model, batch, cfg, _tqr_forward(model, batch, cfg))


def _checkpointed_terms(model, batch, cfg: AVAConfig, parts) -> AVATerms:
    hidden, head, (q_weights, weights), (mu, sigma) = parts
    rules, cm = term_rules(cfg), batch["completion_mask"]
    q_sa, lse = q_taken(
        hidden,
        batch["input_ids"],
        head,
        alpha=rules.alpha,
        beta=rules.beta,
        ptq=rules.ptq,
        weights=q_weights,
        need_lse=rules.need_lse,
        chunk_tokens=chunk_rows(cfg.chunk_tokens, model),
        rows=cm[:, 1:].bool(),  # every AVA term is masked to the response actions
    )
    return rules.terms(q_sa, mu, sigma, cm, weights, lse)


def ava_objective(model, batch, cfg: AVAConfig, objective: Objective):
    """(loss, metrics, terms) of ``objective`` on one batch: through the fused head pass when
    training with a plain linear Q head (``fused_head``), else through the checkpointed head."""
    parts = _tqr_forward(model, batch, cfg)
    hidden, head, weights, reward = parts
    if isinstance(head, LinearQHead):  # a fresh Q head: its fp32 linear layer on fp32 states
        head, hidden = head.linear, hidden.to(head.linear.weight.dtype)
    if cfg.fused_head and torch.is_grad_enabled() and can_use(head):
        ids, cm, rules = batch["input_ids"], batch["completion_mask"], term_rules(cfg)
        chunk = chunk_rows(cfg.chunk_tokens, model, blocks=2)  # u and its gradient at once
        return fused_ava_loss(
            hidden, ids, cm, head, reward, objective, rules, weights=weights, chunk_tokens=chunk
        )
    terms = _checkpointed_terms(model, batch, cfg, parts)
    return (*objective(terms), terms)


def preference_objective(cfg: AVAConfig, half: int, attention_mask: torch.Tensor) -> Objective:
    """−(F_p + c·F_c) (Eqs. 17–18) of a stacked batch: rows [0, half) chosen, the rest rejected."""

    def objective(terms: AVATerms):
        chosen, rejected = _rows(terms, slice(0, half)), _rows(terms, slice(half, None))
        scores = last_token_score(terms.mu, attention_mask, shift=cfg.shift)
        return ava_p_loss(
            chosen,
            rejected,
            scores[:half],
            scores[half:],
            lam=cfg.lam,
            cer_coef=cfg.cer_coef,
            td_on_rejected=cfg.td_on_rejected,
            cer_log=cfg.cer_log,
            use_neg=cfg.use_neg,
            use_irl=cfg.use_irl,
        )

    return objective


def _rows(terms: AVATerms, rows: slice) -> AVATerms:
    return AVATerms(**{f.name: getattr(terms, f.name)[rows] for f in dataclasses.fields(terms)})


class AVATrainer(TextRowsMixin, HeadsCheckpointMixin, MethodEvalMixin, Trainer):
    """`transformers.Trainer` with −F_d (demonstrations) or −(F_p + F_c) (preferences)."""

    rows_kind = "any"

    def __init__(self, *args, method: AVAConfig | None = None, **kwargs):
        self.method = method or AVAConfig()
        # Before Trainer.__init__, so the heads are moved, wrapped and optimised with the model.
        attach_ava_heads(kwargs["model"] if "model" in kwargs else args[0], self.method)
        super().__init__(*args, **kwargs)
        self.metric_store = MetricStore()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        cfg = self.method
        if "chosen_input_ids" not in inputs:
            # AVA-d on demonstrations: a reward model read from it is scored by the summed mean
            get_head(model, REWARD_HEAD).score = sequence_score(cfg, demonstrations=True)
            loss, metrics, _ = ava_objective(model, inputs, cfg, self._ava_d)
        elif cfg.chosen_only:
            chosen = {k: inputs[f"chosen_{k}"] for k in SEQUENCE_FIELDS}
            loss, metrics, _ = ava_objective(model, chosen, cfg, self._ava_d)
        else:
            loss, metrics = self._preference_loss(model, inputs)
        self.metric_store.add(metrics)
        return (loss, {"loss": loss}) if return_outputs else loss

    def _ava_d(self, terms: AVATerms):
        return ava_d_loss(terms, lam=self.method.lam)

    def _preference_loss(self, model, inputs):
        cfg = self.method
        both = stack_pairs(self, inputs)
        half = inputs["chosen_input_ids"].shape[0]
        objective = preference_objective(cfg, half, both["attention_mask"])
        loss, metrics, terms = ava_objective(model, both, cfg, objective)
        # The alternative sequence score, Σ w_k·μ_k over the scored transitions (Eq. 19's expected
        # return without the final token; AVA-d's score), always logged.
        sums = summed_score(terms.mu, both["completion_mask"], shift=cfg.shift).detach()
        metrics["rewards/accuracy_sum"] = (sums[:half] > sums[half:]).float().mean()
        return loss, metrics
