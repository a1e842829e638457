"""Responses to the benchmark's prompts, from a tabular policy or from a causal-LM checkpoint.

Both paths return the same `Samples`, so that every metric is computed once, the same way, for
the exact expert and for a trained transformer. A model is sampled at temperature 1 (or the
`temperature` asked for) with full support, restricted to the task's actions (words and `<eos>`),
with `<eos>` forced at the horizon exactly as the environment forces it for π_ref; the probability
mass a model puts outside the task's actions is reported as `invalid_mass`. Log-probabilities and
entropies are always those of the distribution actually sampled: at temperature T, softmax of the
restricted logits divided by T. Temperature 0 means greedy decoding, a deterministic policy whose
per-token log-probability and entropy are 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from irlalign.synthetic import oracle
from irlalign.synthetic.language import Task
from irlalign.synthetic.model import action_token_ids
from irlalign.synthetic.text import Prompts, prompt_text


@dataclass
class Samples:
    prompt_index: np.ndarray  # (N,) index into the prompts sampled from
    actions: list[np.ndarray]  # action indices, each ending with `<eos>`
    logp: list[np.ndarray]  # per-token log π(a_t | s_t) of the sampling policy
    entropy: list[np.ndarray]  # per-token entropy of π(· | s_t) (0 where `<eos>` is forced)
    extra: dict[str, float] = field(default_factory=dict)


def repeat_prompts(prompts: Prompts, per_prompt: int) -> np.ndarray:
    return np.repeat(np.arange(len(prompts)), per_prompt)


def temper(policy: np.ndarray, temperature: float) -> np.ndarray:
    """A tabular policy at a sampling temperature: π_T ∝ π^(1/T) per state, zeros kept.

    Temperature 0 is greedy: all mass on the most probable action of each state (the first of
    tied ones). Temperature 1 returns `policy` itself.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 1.0:
        return policy
    if temperature == 0.0:
        out = np.zeros_like(policy)
        np.put_along_axis(out, policy.argmax(-1)[..., None], 1.0, axis=-1)
        return out
    with np.errstate(divide="ignore"):
        logits = np.log(policy) / temperature
    out = np.exp(logits - logits.max(-1, keepdims=True))
    return out / out.sum(-1, keepdims=True)


def sample_tabular(
    task: Task,
    policy: np.ndarray,
    prompts: Prompts,
    per_prompt: int,
    seed: int,
    temperature: float = 1.0,
) -> Samples:
    policy = temper(policy, temperature)
    rng = np.random.default_rng(seed)
    index = repeat_prompts(prompts, per_prompt)
    topics, last = prompts.topics[index], prompts.last_words[index]
    actions = oracle.sample(policy, topics, last, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent_table = -np.where(policy > 0, policy * np.log(policy), 0.0).sum(-1)
    logp, ent = [], []
    for k, w, a in zip(topics, last, actions, strict=True):
        logp.append(oracle.sequence_log_probs(policy, k, w, a))
        prev = np.concatenate([[w], a[:-1]])
        ent.append(ent_table[np.arange(len(a)), k, prev])
    return Samples(index, actions, logp, ent)


class TaskActions(LogitsProcessor):
    """Keep only the task's action tokens; force `<eos>` at the last step of the horizon."""

    def __init__(self, allowed: torch.Tensor, eos_id: int, prompt_width: int, horizon: int):
        self.allowed, self.eos_id = allowed, eos_id
        self.prompt_width, self.horizon = prompt_width, horizon

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        return constrain(
            scores,
            self.allowed,
            self.eos_id,
            input_ids.shape[1] - self.prompt_width >= self.horizon - 1,
        )


def constrain(scores: torch.Tensor, allowed: torch.Tensor, eos_id: int, forced: bool):
    keep = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
    if forced:
        keep[eos_id] = True
    else:
        keep[allowed] = True
    return scores.float().masked_fill(~keep, float("-inf"))


@torch.no_grad()
def sample_model(
    model,
    tokenizer,
    task: Task,
    prompts: Prompts,
    per_prompt: int,
    seed: int,
    batch_size: int = 512,
    temperature: float = 1.0,
) -> Samples:
    """Sample `per_prompt` responses per prompt from a causal LM with HF `generate`.

    `temperature` 0 decodes greedily (every copy of a prompt gets the same response).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0.0:
        decoding = {"do_sample": False}
    else:
        decoding = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    index = repeat_prompts(prompts, per_prompt)
    texts = [prompt_text(task, prompts.topics[i], prompts.words[i]) for i in index]
    token_of_action = action_token_ids(task)
    action_of_token = {int(t): a for a, t in enumerate(token_of_action)}
    allowed = torch.as_tensor(token_of_action)
    out = Samples(index, [], [], [])
    invalid = []
    torch.manual_seed(seed)
    model.eval()
    tokenizer.padding_side = "left"
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[start : start + batch_size],
            add_special_tokens=False,
            padding=True,
            return_tensors="pt",
        ).to(model.device)
        width = enc["input_ids"].shape[1]
        proc = TaskActions(
            allowed.to(model.device), tokenizer.eos_token_id, width, task.config.horizon
        )
        gen = model.generate(
            **enc,
            **decoding,
            max_new_tokens=task.config.horizon,
            logits_processor=LogitsProcessorList([proc]),
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        raw = torch.stack(gen.logits, dim=1).float()  # (B, steps, V), before processing
        new = gen.sequences[:, width:]
        logp, ent, bad = _score_batch(
            raw, new, allowed, tokenizer.eos_token_id, task.config.horizon, temperature
        )
        for row in range(new.shape[0]):
            ids = new[row].tolist()
            n = ids.index(tokenizer.eos_token_id) + 1
            out.actions.append(np.array([action_of_token[i] for i in ids[:n]]))
            out.logp.append(logp[row, :n].numpy())
            out.entropy.append(ent[row, :n].numpy())
            invalid.append(bad[row, :n].numpy())
    out.extra["invalid_mass"] = float(np.mean(np.concatenate(invalid)))
    return out


def _score_batch(raw, new, allowed, eos_id, horizon, temperature=1.0):
    """Per-token log-probs, entropies and off-task mass of sampled rows (B, steps), under the
    distribution `generate` sampled from: the restricted logits divided by `temperature` (the
    custom processor runs before HF's temperature warper; masking commutes with the division).

    Greedy (`temperature` 0) is a point mass: log-prob and entropy 0, and the off-task mass is
    its T → 0 limit, 1 where the unrestricted argmax is not a task action."""
    steps = raw.shape[1]
    if temperature == 0.0:
        zeros = torch.zeros(raw.shape[:2])
        bad = (~torch.isin(raw.argmax(-1), allowed.to(raw.device))).float().cpu()
        return zeros, zeros, bad
    raw = raw / temperature
    full = torch.log_softmax(raw, -1)
    bad = 1.0 - full[..., allowed].exp().sum(-1)
    dist = torch.stack(
        [
            torch.log_softmax(constrain(raw[:, t], allowed, eos_id, t >= horizon - 1), -1)
            for t in range(steps)
        ],
        dim=1,
    )
    logp = dist.gather(-1, new[:, :steps, None]).squeeze(-1)
    ent = -(dist.exp() * dist.nan_to_num(neginf=0.0)).sum(-1)
    return logp, ent, bad
