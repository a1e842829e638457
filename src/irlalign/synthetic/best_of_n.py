"""Best-of-N curves on the synthetic task: a pool of M policy samples per held-out prompt,
gold-scored with r*, reranked by any reward model, as in AfD's best-of-N evaluation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irlalign.generation.best_of_n import expected_best_of_n, first_n_best, kl_bound, log2_n


@dataclass
class Pool:
    prompts: list[str]  # P·M, grouped by prompt
    responses: list[str]
    gold: np.ndarray  # (P, M)


def eval_prompt_texts(task_dir: str | Path, n: int | None) -> list[str]:
    from irlalign.synthetic.build import load_eval_prompts, load_task
    from irlalign.synthetic.text import prompt_text

    task = load_task(task_dir)
    prompts = load_eval_prompts(task, task_dir)
    count = len(prompts) if n is None else min(n, len(prompts))
    return [prompt_text(task, prompts.topics[i], prompts.words[i]) for i in range(count)]


def draw_pool(task_dir, sampler, prompts: Sequence[str], m: int, clean: Callable) -> Pool:
    """``m`` samples per prompt from ``sampler`` (a `Sampler`), turn-truncated by ``clean``."""
    from irlalign.synthetic.build import load_task
    from irlalign.synthetic.gold import GoldReward

    rollouts = sampler.sample(list(prompts), m)
    texts = clean(rollouts)
    gold = GoldReward(load_task(task_dir), sampler.tokenizer).score(rollouts.prompts, texts)
    return Pool(rollouts.prompts, texts, gold.reshape(len(prompts), m))


def reference_means(task_dir: str | Path, prompts: Sequence[str]) -> dict[str, float]:
    """Exact mean gold returns of π_ref, π* and the demonstrator (the mean over a mixture of
    demonstrators) on ``prompts``."""
    from irlalign.synthetic import oracle
    from irlalign.synthetic.build import load_task
    from irlalign.synthetic.evaluate import exact_returns
    from irlalign.synthetic.sources import demonstrators
    from irlalign.synthetic.text import Prompts, parse_prompt

    task = load_task(task_dir)
    parsed = [parse_prompt(task, p) for p in prompts]
    pr = Prompts(np.array([t for t, _ in parsed]), [w for _, w in parsed])
    demo = [exact_returns(task, pol, pr).mean() for pol in demonstrators(task).values()]
    return {
        "ref": float(exact_returns(task, task.ref_table(), pr).mean()),
        "expert": float(exact_returns(task, oracle.expert(task).policy, pr).mean()),
        "demo": float(np.mean(demo)),
    }


def normalise(value: float, means: dict[str, float], init_mean: float) -> dict[str, float | str]:
    """The task's normalised score, and AfD's demonstration-normalised score: r/r̄_demo,
    or (r − r̄_init)/(r̄_demo − r̄_init) when r̄_demo is not clearly positive."""
    out: dict[str, float | str] = {
        "normalised_score": (value - means["ref"]) / (means["expert"] - means["ref"])
    }
    demo = means["demo"]
    if demo > 0.1 * max(abs(init_mean), 1e-6) and demo > 0:
        out["demo_normalised"], out["demo_normalisation"] = value / demo, "ratio"
    elif demo > init_mean:
        out["demo_normalised"] = (value - init_mean) / (demo - init_mean)
        out["demo_normalisation"] = "init_to_demo"
    else:
        out["demo_normalisation"] = "undefined"
    return out


def curve(
    scores: np.ndarray, pool: Pool, grid: Sequence[int], means, init_mean: float, exact: bool
) -> list[dict]:
    """Gold return of the RM's best of N per N (exact subset estimator or the first N)."""
    estimate = expected_best_of_n if exact else first_n_best
    scores = np.asarray(scores, float).reshape(pool.gold.shape)
    rows = []
    for n in grid:
        if n > pool.gold.shape[1]:
            break
        per_prompt = estimate(scores, pool.gold, n)
        value = float(per_prompt.mean())
        se = (
            float(per_prompt.std(ddof=1) / np.sqrt(len(per_prompt))) if len(per_prompt) > 1 else 0.0
        )
        rows.append(
            {
                "n": n,
                "kl_bound": kl_bound(n),
                "log2_n": log2_n(n),
                "gold_return": value,
                "gold_return_se": se,
                **normalise(value, means, init_mean),
            }
        )
    return rows
