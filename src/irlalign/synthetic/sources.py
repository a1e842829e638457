"""The named tabular policies the datasets are drawn from, and the demonstrators among them."""

from __future__ import annotations

import numpy as np

from irlalign.synthetic import oracle
from irlalign.synthetic.language import Task

# The style word sets draw from a random stream of their own (the datasets use 1–4), so that
# adding styled demonstrators changes no other dataset of the task.
STYLE_STREAM = 5


def style_word_sets(task: Task) -> list[np.ndarray]:
    """Disjoint word sets of the styled demonstrators style_0 …, outside the synonym pairs."""
    cfg = task.config
    if cfg.n_demo_styles == 0:
        return []
    rng = np.random.default_rng([cfg.seed, STYLE_STREAM])
    words = rng.permutation(np.arange(2 * cfg.n_synonym_pairs, cfg.n_words))
    k = cfg.demo_style_words
    return [np.sort(words[i * k : (i + 1) * k]) for i in range(cfg.n_demo_styles)]


def pool_sources(task: Task) -> dict[str, np.ndarray]:
    """The sources of the preference pairs: π_ref at temperatures, then partial experts π_β′."""
    cfg = task.config
    sources = {f"ref_T{t:g}": task.ref_table(t) for t in cfg.ref_temperatures}
    sources.update({f"beta_{b:g}": oracle.expert(task, b).policy for b in cfg.partial_betas})
    return sources


def demonstrator_sources(task: Task) -> dict[str, np.ndarray]:
    """π*, its styled twin and the strongly styled demonstrators style_0 …"""
    cfg = task.config
    expert = oracle.expert(task).policy
    sources = {
        "expert": expert,
        "styled": oracle.styled(expert, task.synonym_pairs(), cfg.style_factor),
    }
    for i, words in enumerate(style_word_sets(task)):
        sources[f"style_{i}"] = oracle.favour_words(expert, words, cfg.demo_style_factor)
    return sources


def policy_sources(task: Task) -> dict[str, np.ndarray]:
    """Every named tabular policy of the task (what `oracle:<name>` evaluates)."""
    return {**pool_sources(task), **demonstrator_sources(task)}


def demonstrators(task: Task) -> dict[str, np.ndarray]:
    """The demonstrators of the `demos` dataset, by name, in the configured order."""
    sources = demonstrator_sources(task)
    return {name: sources[name] for name in task.config.demonstrator_names()}
