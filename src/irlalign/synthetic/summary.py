"""Measured properties of a task's datasets, exact where the oracle allows, for `task.json`.

- each preference source's exact expected return (and normalised score) on the evaluation
  prompts, its number of pairs and how often its labels agree with the true ordering;
- each demonstrator's exact expected return, and how much of the variance of the
  demonstrations' log-ratio Σ_t log(π_demo/π_ref) is style: the part Σ_t log(π_demo/π*) by which
  a demonstrator departs from the expert.
"""

from __future__ import annotations

import numpy as np

from irlalign.synthetic import oracle
from irlalign.synthetic.datasets import GOLD, MISSPECIFIED
from irlalign.synthetic.evaluate import exact_returns
from irlalign.synthetic.language import Task
from irlalign.synthetic.sources import demonstrators, pool_sources, style_word_sets
from irlalign.synthetic.text import Prompts


def start_distribution(task: Task) -> np.ndarray:
    """Exact probability of each response start (topic, last prompt word), (K, W): topic and
    first word uniform, the prompt length uniform, the other words from π_ref's word chain."""
    cfg = task.config
    chain = task.prompt_word_chain()
    word = np.full(cfg.n_words, 1.0 / cfg.n_words)
    last = np.zeros(cfg.n_words)
    n_lengths = cfg.prompt_words_max - cfg.prompt_words_min + 1
    for length in range(1, cfg.prompt_words_max + 1):
        if length >= cfg.prompt_words_min:
            last += word / n_lengths
        word = word @ chain
    return np.full((cfg.n_topics, 1), 1.0 / cfg.n_topics) * last[None, :]


def log_ratio_decomposition(task: Task) -> dict[str, float]:
    """Exact variance of L = Σ_t log(π_demo/π_ref) over demonstrations (prompts from the prompt
    distribution, the demonstrator drawn uniformly from the configured ones, each response from
    its own demonstrator), split by covariance: Var L = Cov(S, L) + Cov(L − S, L) with the style
    term S = Σ_t log(π_demo/π*). `style_share` = Cov(S, L) / Var L."""
    ref, expert = task.ref_table(), oracle.expert(task).policy
    start = start_distribution(task)
    demos = list(demonstrators(task).values())
    moments = np.zeros(5)  # E[L], E[S], E[L²], E[SL], E[S²]
    for policy in demos:
        f, g = oracle.kl_per_step(policy, ref), oracle.kl_per_step(policy, expert)
        tables = (
            oracle.policy_values(policy, f),
            oracle.policy_values(policy, g),
            oracle.cross_moments(policy, f, f),
            oracle.cross_moments(policy, g, f),
            oracle.cross_moments(policy, g, g),
        )
        moments += [(start * table[0]).sum() / len(demos) for table in tables]
    e_l, e_s, e_ll, e_sl, e_ss = moments
    var_l, cov_sl = e_ll - e_l**2, e_sl - e_s * e_l
    return {
        "log_ratio_mean": float(e_l),
        "log_ratio_variance": float(var_l),
        "style_variance": float(e_ss - e_s**2),
        "style_share": float(cov_sl / var_l),
    }


def demonstrator_summary(task: Task, prompts: Prompts) -> dict:
    words = style_word_sets(task)
    out = {}
    for name, policy in demonstrators(task).items():
        out[name] = {"exact_return": float(exact_returns(task, policy, prompts).mean())}
        if name.startswith("style_"):
            out[name]["style_words"] = [task.words[w] for w in words[int(name[6:])]]
    return out


def preference_summary(task: Task, prompts: Prompts, pairs) -> dict:
    """Per preference source: exact return and normalised score on `prompts`, the number of
    training pairs with a side from it, and their label agreement with the true ordering."""
    sources = pool_sources(task)
    ref = exact_returns(task, task.ref_table(), prompts).mean()
    best = exact_returns(task, oracle.expert(task).policy, prompts).mean()
    chosen, rejected = np.array(pairs["chosen_return"]), np.array(pairs["rejected_return"])
    sides = np.array(pairs["chosen_source"]), np.array(pairs["rejected_source"])
    out = {}
    for name, policy in sources.items():
        value = exact_returns(task, policy, prompts).mean()
        mask = (sides[0] == name) | (sides[1] == name)
        ordered = mask & (chosen != rejected)
        out[name] = {
            "exact_return": float(value),
            "normalised_score": float((value - ref) / (best - ref)),
            "pairs": int(mask.sum()),
            "label_agreement": float((chosen[ordered] > rejected[ordered]).mean())
            if ordered.any()
            else None,
            "labeller": MISSPECIFIED if name in task.config.misspecified_sources else GOLD,
        }
    return out


def data_summary(task: Task, prompts: Prompts, pairs) -> dict:
    """Everything above, for the evaluation `prompts` and the training preference `pairs`."""
    return {
        "demonstrators": demonstrator_summary(task, prompts),
        "demo_log_ratio": log_ratio_decomposition(task),
        "preference_sources": preference_summary(task, prompts, pairs),
    }
