"""IQLearn: inverse soft-Q learning as TD-regularised MLE, offline and (opt-in) online.

Wulfmeier et al. 2024, *Imitating Language via Scalable Inverse Reinforcement Learning*,
Eq. (14). Q = the LM's logits, V = logsumexp, no extra parameters. The paper does not fix γ or
λ, so the defaults (γ = 1, λ = 0.1, offline) are the library's own. Online (a reconstruction:
the paper does not give its online objective in full): each step also samples continuations of
some of the batch's prompts from the current policy and adds the TD and value-difference terms
on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from transformers import Trainer

from irlalign.generation.continuations import PolicySamples, batch_prompts, sample_continuations
from irlalign.losses import IQTerms, iq_terms, iqlearn_offline_loss, sequence_rewards
from irlalign.losses.fused import can_fuse
from irlalign.losses.fused_losses import fused_iq_loss
from irlalign.losses.iqlearn import iqlearn_online_expert_loss, iqlearn_online_policy_loss
from irlalign.modeling.forward import (
    chunk_rows,
    eos_id,
    hidden_and_head,
    output_head,
    pad_id,
    unwrap,
)
from irlalign.modeling.heads import VALUE_HEAD, ScalarHead, attach_head, get_head
from irlalign.trainers.common import MethodEvalMixin, MetricStore, token_normaliser
from irlalign.trainers.heads import HeadsCheckpointMixin
from irlalign.trainers.raw_rows import TextRowsMixin

TRUNCATION_MODES = ("bootstrap", "drop")


@dataclass
class IQLearnConfig:
    lam: float = 0.1  # λ, TD-regulariser weight; 0 => exactly SFT
    gamma: float = 1.0  # γ
    truncation: str = "bootstrap"  # or "drop": the last TD term of a response with no EOS
    tau: float = 1.0  # soft-value temperature; Eq. (14) implies 1 (other values: an ablation)
    chunk_tokens: int | None = None  # rows per vocabulary chunk; None: sized by V (chunk_rows)
    # the head's gradient computed inside the forward chunk (3 vocabulary products instead of 4)
    # for the offline loss with τ = 1 and V = logsumexp on a plain Linear head; same numbers
    fused_head: bool = True
    value_head: bool = False  # ablation: scalar V_φ head instead of LSE(logits)
    online: bool = False  # also train the TD term on the current policy's samples
    mix_in: float = 0.1  # α, weight of the policy's samples in μ_mix; used only when online
    value_diff: bool = True  # online value-difference term (a reconstruction); always logged
    sample_temperature: float = 1.0  # 1 samples π = softmax(logits); with tau != 1 set it to tau
    max_new_tokens: int = 256  # online sampling length budget; longer responses are truncated
    # Sampled sequences per step; None: max(1, round(mix_in * batch rows)). Only the
    # variance of the policy-side estimate depends on it, α alone sets that side's weight.
    policy_samples: int | None = None
    # Fresh samples every this many training micro-batches, the last ones reused in between:
    # Garg et al.'s online IQ-Learn draws its policy side from a replay buffer of earlier
    # policies' samples, so slightly stale samples are within the method; 1: always fresh.
    sample_every: int = 1

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise ValueError("lam must be >= 0")
        if not 0 < self.gamma <= 1:
            raise ValueError("gamma must be in (0, 1]")
        if self.truncation not in TRUNCATION_MODES:
            raise ValueError(f"truncation must be one of {TRUNCATION_MODES}")
        if self.chunk_tokens is not None and self.chunk_tokens < 1:
            raise ValueError("chunk_tokens must be >= 1 or None")
        if self.tau <= 0:
            raise ValueError("tau must be > 0")
        if self.value_head and self.tau != 1.0:
            raise ValueError("value_head and tau != 1 are separate ablations; set one")
        if not 0 <= self.mix_in <= 1:
            raise ValueError("mix_in must be in [0, 1]")
        if self.sample_temperature <= 0 or self.max_new_tokens < 1:
            raise ValueError("sample_temperature must be > 0 and max_new_tokens >= 1")
        if self.policy_samples is not None and self.policy_samples < 1:
            raise ValueError("policy_samples must be >= 1 or None")
        if self.sample_every < 1:
            raise ValueError("sample_every must be >= 1")


class IQLearnTrainer(TextRowsMixin, HeadsCheckpointMixin, MethodEvalMixin, Trainer):
    """`transformers.Trainer` whose loss is Eq. (14) on expert (demonstration) tokens."""

    def __init__(self, *args, method: IQLearnConfig | None = None, **kwargs):
        self.method = method or IQLearnConfig()
        if self.method.value_head:
            # Before Trainer.__init__, so the head is moved, wrapped and optimised with the model.
            model = kwargs["model"] if "model" in kwargs else args[0]
            attach_head(model, VALUE_HEAD, ScalarHead(unwrap(model).config.hidden_size))
        super().__init__(*args, **kwargs)
        self.metric_store = MetricStore()
        self._replay: PolicySamples | None = None  # the last policy samples, reused
        self._replay_age = 0  # training micro-batches since they were drawn

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        cfg = self.method
        n, scale = token_normaliser(self, num_items_in_batch, inputs["completion_mask"])
        if self._fusable(model):
            loss, metrics, terms = self._fused_offline(model, inputs, n)
            loss = loss * scale
        else:
            terms = self._terms(
                model, inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"]
            )
            if cfg.online:
                loss, metrics = self._online_loss(model, inputs, terms, n, scale)
            else:
                loss, metrics = iqlearn_offline_loss(
                    terms.logp, terms.r_hat, terms.mask, terms.td_mask, lam=cfg.lam, num_items=n
                )
                loss = loss * scale
        seq = sequence_rewards(terms.logp, terms.r_hat, terms.v, terms.mask, gamma=cfg.gamma)
        metrics["iq/v0"] = seq["v0"].mean().detach()
        metrics["iq/truncated"] = terms.truncated.any(1).float().mean()
        self.metric_store.add(metrics)
        return (loss, {"loss": loss}) if return_outputs else loss

    def _fusable(self, model) -> bool:
        """Eq. (14) goes through the fused head pass when it applies: offline, τ = 1, V the
        logsumexp (no value head) and a plain Linear head; otherwise the checkpointed chunks."""
        cfg = self.method
        if not cfg.fused_head or cfg.online or cfg.value_head or cfg.tau != 1.0:
            return False
        return can_fuse(output_head(unwrap(model)))

    def _fused_offline(self, model, inputs, n):
        cfg = self.method
        hidden, head = hidden_and_head(model, inputs["input_ids"], inputs["attention_mask"])
        return fused_iq_loss(
            hidden,
            inputs["input_ids"],
            inputs["completion_mask"],
            head,
            eos_id=eos_id(self.processing_class, self.model),
            lam=cfg.lam,
            gamma=cfg.gamma,
            drop_truncated=cfg.truncation == "drop",
            num_items=n,
            chunk_tokens=chunk_rows(cfg.chunk_tokens, model),
        )

    def _terms(
        self, model, input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor
    ) -> IQTerms:
        """Eq. (14)'s per-token terms of one right-padded batch (expert or policy samples)."""
        cfg = self.method
        hidden, head = hidden_and_head(model, input_ids, attention_mask)
        return iq_terms(
            hidden,
            input_ids,
            completion_mask,
            head,
            eos_id=eos_id(self.processing_class, self.model),
            gamma=cfg.gamma,
            drop_truncated=cfg.truncation == "drop",
            chunk_tokens=chunk_rows(cfg.chunk_tokens, model),
            tau=cfg.tau,
            value_fn=get_head(model, VALUE_HEAD) if cfg.value_head else None,
        )

    def _online_loss(self, model, inputs, expert: IQTerms, n, scale: float):
        """L_online = expert side + policy side; returns the loss HF backpropagates.

        The expert side keeps the offline normaliser, so α = 0 is the offline loss exactly. The
        policy side is a mean over its own tokens; when `n` counts the expert tokens of a whole
        gradient-accumulation step (or of all processes), each micro-batch's policy mean is
        weighted by its share of them, so the accumulated gradient is one weighted mean of the
        policy side too, as in a single large batch.
        """
        cfg = self.method
        kw = {"lam": cfg.lam, "mix_in": cfg.mix_in, "gamma": cfg.gamma}
        kw["value_diff"] = cfg.value_diff
        e = expert
        loss_e, metrics = iqlearn_online_expert_loss(
            e.logp, e.r_hat, e.v, e.v_next, e.mask, e.td_mask, num_items=n, **kw
        )
        samples = self._current_samples(model, inputs)
        p = self._terms(model, samples.input_ids, samples.attention_mask, samples.completion_mask)
        loss_p, policy_metrics = iqlearn_online_policy_loss(
            p.r_hat, p.v, p.v_next, p.mask, p.td_mask, **kw
        )
        share = 1.0 if n is None else e.mask.sum() / n
        loss = (loss_e + loss_p * share) * scale
        metrics.update(policy_metrics)
        # a share of the step like the expert side (metrics sum shares over micro-batches)
        metrics["loss/total"] = (loss_e + loss_p * share).detach()
        # The unweighted value difference E_π[V − γV'] − E_E[V − γV'], logged even when off.
        metrics["loss/value_diff"] = metrics["iq/value_policy"] - metrics["iq/value_expert"]
        metrics["iq/policy_truncated"] = (~samples.finished).float().mean()
        metrics["iq/policy_length"] = samples.completion_mask.sum(1).float().mean()
        return loss, metrics

    def _current_samples(self, model, inputs) -> PolicySamples:
        """Fresh samples every `sample_every` training micro-batches, the last ones between
        (evaluation draws its own and leaves them alone). Not checkpointed: a resumed run draws
        afresh."""
        if not model.training:
            return self._policy_samples(model, inputs)
        if self._replay is None or self._replay_age >= self.method.sample_every:
            self._replay, self._replay_age = self._policy_samples(model, inputs), 0
        self._replay_age += 1
        return self._replay

    def _policy_samples(self, model, inputs) -> PolicySamples:
        """Continuations of the first n_pol prompts of the batch from the current policy."""
        cfg = self.method
        rows = cfg.policy_samples or max(1, round(cfg.mix_in * inputs["input_ids"].shape[0]))
        prompts = batch_prompts(
            inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"], rows
        )
        samples = sample_continuations(
            unwrap(model),
            prompts,
            eos_id=eos_id(self.processing_class, self.model),
            pad_id=pad_id(self.processing_class, self.model),
            temperature=cfg.sample_temperature,
            max_new_tokens=cfg.max_new_tokens,
        )
        device = inputs["input_ids"].device
        return PolicySamples(*(t.to(device) for t in vars(samples).values()))
