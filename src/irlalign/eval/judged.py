"""A policy's responses to held-out prompts, judged: the mean judge score, the win rate against a
baseline with a bootstrap interval, length and diversity.

Generation goes through the library's own samplers: `HFSampler` (what the online loops train
on) for any data, and on a synthetic task the benchmark's sampler (`synthetic eval`'s: task
actions only, `<eos>` forced at the horizon), so that a judged evaluation with the true reward
(`gold`) gives exactly `synthetic eval`'s numbers for the same seed. The judge is any
`reward_model` value the loops accept, read by the loops' parser (`load_reward_spec`).

Every prompt gets `samples` responses from the policy and, when a baseline is given, as many
from the baseline; pair k of prompt i is (policy sample k, baseline sample k). Scores are
averaged per prompt first: the standard errors and the bootstrap treat prompts, not samples, as
the independent units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from irlalign.eval.inputs import GOLD, JudgedInputs
from irlalign.eval.metrics import distinct_n, mean_and_se, per_group_means, self_bleu, win_rate


@dataclass(frozen=True)
class JudgedOptions:
    samples: int = 4  # responses per prompt, from the policy and from the baseline alike
    temperature: float = 1.0
    max_new_tokens: int = 128  # the synthetic task's sampler stops at the task's horizon instead
    seed: int = 0  # sampling (policy and baseline alike) and the bootstrap
    max_prompts: int | None = None  # the first N distinct prompts; None: all
    batch_size: int = 16  # prompts per `generate` call; responses per judge call is 4x this
    stop_strings: tuple[str, ...] = ()  # a response ends after the first of these
    resamples: int = 2000  # bootstrap resamples of the prompts for the win-rate interval
    level: float = 0.95  # the interval's coverage

    def __post_init__(self) -> None:
        for name in ("samples", "max_new_tokens", "batch_size", "resamples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_prompts is not None and self.max_prompts < 1:
            raise ValueError(f"max_prompts must be >= 1 or None, got {self.max_prompts}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


@dataclass
class Generations:
    """``samples`` responses per prompt, prompt after prompt."""

    responses: list[str]
    lengths: list[int]  # generated tokens, the final EOS included
    entropies: list[np.ndarray] = field(default_factory=list)  # per token, of the sampled dist.


# ---- generation -----------------------------------------------------------------------------


def generate(model, tokenizer, prompts: Sequence[str], opts: JudgedOptions, task=None, desc=""):
    """`Generations` of ``model`` on ``prompts`` (the synthetic task's sampler when ``task``)."""
    if task is not None:
        return _generate_on_task(model, tokenizer, task, prompts, opts)
    return _generate_hf(model, tokenizer, prompts, opts, desc)


def _generate_hf(model, tokenizer, prompts: Sequence[str], opts: JudgedOptions, desc: str):
    import torch

    from irlalign.generation.sampling import HFSampler, SamplingConfig

    sampling = SamplingConfig(
        temperature=opts.temperature,
        max_new_tokens=opts.max_new_tokens,
        stop_strings=opts.stop_strings,
        batch_size=opts.batch_size,
    )
    torch.manual_seed(opts.seed)
    sampler = HFSampler(model, tokenizer, sampling, progress=None, desc=desc or "generating")
    rollouts = sampler.sample(list(prompts), opts.samples)
    lengths = rollouts.completion_mask.sum(1).tolist()
    entropies = sampling_entropies(model, rollouts, opts.temperature, opts.batch_size)
    return Generations(list(rollouts.responses), [int(n) for n in lengths], entropies)


def _generate_on_task(model, tokenizer, task, prompts: Sequence[str], opts: JudgedOptions):
    """`synthetic eval`'s draw (same sampler, same seed), as response texts without `<eos>`."""
    from irlalign.synthetic.sampling import sample_model
    from irlalign.synthetic.text import Prompts, parse_prompt

    parsed = []
    for i, text in enumerate(prompts):
        try:
            parsed.append(parse_prompt(task, text))
        except ValueError as err:
            raise ValueError(f"prompt {i}: not a prompt of the synthetic task ({err})") from None
    drawn = sample_model(
        model,
        tokenizer,
        task,
        Prompts(np.array([t for t, _ in parsed]), [w for _, w in parsed]),
        opts.samples,
        opts.seed,
        temperature=opts.temperature,
    )
    responses = [" ".join(task.words[a] for a in actions[:-1]) for actions in drawn.actions]
    return Generations(responses, [len(a) for a in drawn.actions], list(drawn.entropy))


def sampling_entropies(model, rollouts, temperature: float, batch_size: int) -> list[np.ndarray]:
    """Per response token, the entropy of the distribution it was drawn from, softmax(logits/T),
    from one teacher-forced pass (the head in vocabulary chunks, as the losses run it)."""
    import torch

    from irlalign.losses.ops import token_stats
    from irlalign.modeling.forward import chunk_rows, hidden_and_head

    out: list[np.ndarray] = []
    device = next(model.parameters()).device
    chunk = chunk_rows(None, model)
    with torch.no_grad():
        for start in range(0, rollouts.input_ids.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            am = rollouts.attention_mask[rows]
            width = int(am.sum(1).max())
            ids = rollouts.input_ids[rows, :width].to(device)
            hidden, head = hidden_and_head(model, ids, am[:, :width].to(device))

            def scaled(h, head=head):
                return head(h) / temperature

            _, _, ent = token_stats(
                hidden[:, :-1], ids[:, 1:], scaled, chunk_tokens=chunk, with_entropy=True
            )
            mask = rollouts.completion_mask[rows, 1:width].bool()
            out += [ent[b][mask[b].to(device)].float().cpu().numpy() for b in range(len(mask))]
    return out


# ---- judging and the summary ----------------------------------------------------------------


def load_judge(spec: str, task, tokenizer):
    """The judge's `RewardModel`: `gold` is the task's r* (as the loops' `load_reward` builds
    it), any other string is read by `load_reward_spec`, the loops' own parser."""
    from irlalign.modeling.reward_specs import load_reward_spec

    if spec != GOLD:
        return load_reward_spec(spec)
    if task is None:
        raise ValueError("judge 'gold' is the true reward of a synthetic task: give the task")
    from irlalign.synthetic.gold import GoldReward

    return GoldReward(task, tokenizer)


def judge_scores(judge, prompts: Sequence[str], responses: Sequence[str], batch: int, desc: str):
    """One judge score per (prompt, response), scored ``batch`` at a time under a bar."""
    from irlalign.generation.progress import progress_bar

    scores = []
    with progress_bar(len(responses), desc, unit="response") as bar:
        for start in range(0, len(responses), batch):
            stop = start + batch
            scores.append(np.asarray(judge.score(prompts[start:stop], responses[start:stop])))
            bar.update(len(responses[start:stop]))
    return np.concatenate(scores).astype(float) if scores else np.zeros(0)


def response_metrics(gen: Generations, n_prompts: int, scores: np.ndarray | None) -> dict:
    """Judge score (mean ± SE over the per-prompt means), length and diversity of responses;
    distinct-n and self-BLEU read whitespace-separated words, self-BLEU within each prompt."""
    words = [r.split() for r in gen.responses]
    k = len(words) // n_prompts
    out: dict[str, Any] = {}
    if scores is not None:
        mean, se = mean_and_se(per_group_means(scores, n_prompts))
        out.update(judge_score=mean, judge_score_se=se)
    out.update(
        mean_length=float(np.mean(gen.lengths)),
        distinct_1=distinct_n(words, 1),
        distinct_2=distinct_n(words, 2),
        self_bleu=_number(self_bleu([words[i * k : (i + 1) * k] for i in range(n_prompts)])),
        entropy=float(np.concatenate(gen.entropies).mean()) if gen.entropies else None,
        n_responses=len(words),
    )
    return out


def _number(value: float) -> float | None:
    """None for nan (self-BLEU of one sample per prompt): summary.json stays strict JSON."""
    return None if np.isnan(value) else float(value)


def sample_rows(
    prompts: Sequence[str],
    gen: Generations,
    scores: np.ndarray | None,
    base: Generations | None,
    base_scores: np.ndarray | None,
) -> list[dict]:
    """`samples.jsonl`: one row per (prompt, sample index), the baseline's response beside."""
    k = len(gen.responses) // len(prompts)
    rows = []
    for j, response in enumerate(gen.responses):
        row = {"prompt_index": j // k, "sample": j % k, "prompt": prompts[j // k]}
        row.update(response=response, tokens=gen.lengths[j])
        if scores is not None:
            row["judge_score"] = float(scores[j])
        if base is not None:
            row.update(baseline_response=base.responses[j], baseline_tokens=base.lengths[j])
            if base_scores is not None:
                row["baseline_judge_score"] = float(base_scores[j])
        rows.append(row)
    return rows


# ---- the whole evaluation -------------------------------------------------------------------


def _device() -> str | None:
    import torch

    return "cuda" if torch.cuda.is_available() else None


def _draw(path: str, checked, opts: JudgedOptions, task, desc: str):
    """Load one policy, render the prompts with its tokenizer, generate, free the model."""
    from irlalign.eval.checkpoints import load_policy
    from irlalign.eval.prompts import prompt_texts

    model, tokenizer = load_policy(path, _device())
    prompts = prompt_texts(checked, tokenizer, opts.max_prompts)
    gen = generate(model, tokenizer, prompts, opts, task, desc)
    del model
    return prompts, tokenizer, gen


def evaluate_judged(inputs: JudgedInputs, opts: JudgedOptions) -> tuple[dict, list[dict]]:
    """(summary, samples rows) of the policy on the prompts, judged and against the baseline
    when given."""
    task = None
    if inputs.task is not None:
        from irlalign.synthetic.build import load_task

        task = load_task(inputs.task)
    prompts, tokenizer, gen = _draw(inputs.model, inputs.prompts, opts, task, "policy")
    base = None
    if inputs.baseline is not None:
        base_prompts, _, base = _draw(inputs.baseline, inputs.prompts, opts, task, "baseline")
        if len(base_prompts) != len(prompts):
            raise ValueError("the baseline's tokenizer renders a different number of prompts")
    scores = base_scores = None
    if inputs.judge is not None:
        judge = load_judge(inputs.judge, task, tokenizer)
        batch = 4 * opts.batch_size
        # Both sides are judged against the policy's rendering of the prompt: a pair is judged
        # in one context.
        repeated = [p for p in prompts for _ in range(opts.samples)]
        scores = judge_scores(judge, repeated, gen.responses, batch, "judging policy")
        if base is not None:
            base_scores = judge_scores(judge, repeated, base.responses, batch, "judging baseline")
    summary: dict[str, Any] = {
        "model": inputs.model,
        "baseline_model": inputs.baseline,
        "judge": inputs.judge,
        "prompts": inputs.prompts.where,
        "task": inputs.task,
        "sampler": "synthetic task" if task is not None else "generate",
        "n_prompts": len(prompts),
        **{k: v for k, v in asdict(opts).items() if k not in ("batch_size",)},
        "policy": response_metrics(gen, len(prompts), scores),
    }
    if task is not None:
        summary["max_new_tokens"] = task.config.horizon
    if base is not None:
        summary["baseline"] = response_metrics(base, len(prompts), base_scores)
    if base_scores is not None:
        summary["win_rate"] = win_rate(
            scores, base_scores, len(prompts), resamples=opts.resamples, seed=opts.seed,
            level=opts.level,
        )  # fmt: skip
    return summary, sample_rows(prompts, gen, scores, base, base_scores)


def write_results(out: str | Path, summary: dict, rows: list[dict]) -> tuple[Path, Path]:
    """``out`` a folder: `summary.json` and `samples.jsonl` in it; a `.json` file: the summary
    there and the samples beside it as `<name>.samples.jsonl`."""
    import json

    from irlalign.runs import write_atomic, write_jsonl

    out = Path(out)
    if out.suffix == ".json":
        summary_path, samples_path = out, out.with_suffix(".samples.jsonl")
    else:
        summary_path, samples_path = out / "summary.json", out / "samples.jsonl"
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(samples_path, rows)
    write_atomic(summary_path, json.dumps(summary, indent=2) + "\n")
    return summary_path, samples_path
