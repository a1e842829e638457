"""The benchmark's datasets in the library's standard formats.

Each writer draws from its own seeded random stream, so a dataset is a pure function of
(config, seed) whichever other datasets are written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict

from irlalign.synthetic import oracle
from irlalign.synthetic.language import Task
from irlalign.synthetic.sources import demonstrators, pool_sources
from irlalign.synthetic.text import Prompts, prompt_text, response_text, sample_prompts

STREAMS = {"pretrain": 1, "demos": 2, "preferences": 3, "eval_prompts": 4}
# The labeller of the pairs from `misspecified_sources`, and that of every other pair.
MISSPECIFIED, GOLD = "gold+length", "gold"


def stream(task: Task, name: str, split: str = "train") -> np.random.Generator:
    return np.random.default_rng([task.config.seed, STREAMS[name], split == "test"])


def sample_texts(
    task: Task, policy: np.ndarray, prompts: Prompts, rng: np.random.Generator
) -> tuple[list, list, list]:
    """Prompt strings, response strings and true returns for one sample per prompt."""
    reward = task.reward_table()
    actions = oracle.sample(policy, prompts.topics, prompts.last_words, rng)
    returns = [
        float(oracle.sequence_rewards(reward, k, w, a).sum())
        for k, w, a in zip(prompts.topics, prompts.last_words, actions, strict=True)
    ]
    texts = [prompt_text(task, k, w) for k, w in zip(prompts.topics, prompts.words, strict=True)]
    return texts, [response_text(task, a) for a in actions], returns


def pretrain_split(task: Task, split: str) -> Dataset:
    n = task.config.n_pretrain if split == "train" else task.config.n_pretrain_test
    rng = stream(task, "pretrain", split)
    prompts, responses, _ = sample_texts(task, task.ref_table(), sample_prompts(task, n, rng), rng)
    return Dataset.from_dict(
        {"text": [f"{p} {r}" for p, r in zip(prompts, responses, strict=True)]}
    )


def demos_split(task: Task, split: str) -> Dataset:
    """One demonstration per prompt, from the demonstrator or a uniform mixture of several."""
    cfg = task.config
    n = cfg.n_demos if split == "train" else cfg.n_demos_test
    rng = stream(task, "demos", split)
    demos = demonstrators(task)
    names = list(demos)
    prompts = sample_prompts(task, n, rng)
    if len(names) == 1:
        _, responses, returns = sample_texts(task, demos[names[0]], prompts, rng)
        which = np.zeros(n, dtype=np.int64)
    else:
        which = rng.integers(0, len(names), size=n)
        responses, returns = _draw_side(task, demos, names, prompts, which, rng)
    return Dataset.from_dict(
        {
            "prompt": [
                prompt_text(task, k, w) for k, w in zip(prompts.topics, prompts.words, strict=True)
            ],
            "completion": list(responses),
            "true_return": [float(r) for r in returns],
            "source": np.array(names)[which].tolist(),
        }
    )


def preferences_split(task: Task, split: str) -> Dataset:
    """Pairs from a mixture of sources, labelled by a Bradley–Terry draw on the true returns
    (plus a length bonus for pairs from `misspecified_sources`)."""
    cfg = task.config
    n = cfg.n_preferences if split == "train" else cfg.n_preferences_test
    rng = stream(task, "preferences", split)
    sources = pool_sources(task)
    names = list(sources)
    prompts = sample_prompts(task, n, rng)
    pick = _pick_sources(cfg.preference_pairing, len(names), n, rng)
    sides = [_draw_side(task, sources, names, prompts, pick[:, side], rng) for side in (0, 1)]
    # An identical pair carries no preference; redraw the second side until the texts differ.
    for _ in range(50):
        ties = np.flatnonzero(np.array(sides[0][0]) == np.array(sides[1][0]))
        if not len(ties):
            break
        redo = _draw_side(task, sources, names, prompts.subset(ties), pick[ties, 1], rng)
        for k, i in enumerate(ties):
            sides[1][0][i], sides[1][1][i] = redo[0][k], redo[1][k]
    (a_txt, a_ret), (b_txt, b_ret) = sides
    src = np.array(names)[pick]
    misspecified = np.isin(src, cfg.misspecified_sources).any(axis=1)
    margin = _label_score(cfg, a_txt, a_ret, misspecified) - _label_score(
        cfg, b_txt, b_ret, misspecified
    )
    first = rng.random(n) < 1.0 / (1.0 + np.exp(-margin / cfg.label_temperature))
    columns = {
        "prompt": [
            prompt_text(task, k, w) for k, w in zip(prompts.topics, prompts.words, strict=True)
        ],
        "chosen": [a if f else b for a, b, f in zip(a_txt, b_txt, first, strict=True)],
        "rejected": [b if f else a for a, b, f in zip(a_txt, b_txt, first, strict=True)],
        "chosen_source": np.where(first, src[:, 0], src[:, 1]).tolist(),
        "rejected_source": np.where(first, src[:, 1], src[:, 0]).tolist(),
        "chosen_return": np.where(first, a_ret, b_ret).tolist(),
        "rejected_return": np.where(first, b_ret, a_ret).tolist(),
    }
    # The default pool keeps its columns; the extra ones exist only where they say something.
    if cfg.preference_pairing == "shared":
        columns["source"] = src[:, 0].tolist()
    if cfg.misspecified_sources:
        columns["labeller"] = np.where(misspecified, MISSPECIFIED, GOLD).tolist()
    return Dataset.from_dict(columns)


def _pick_sources(pairing: str, n_sources: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Source index of each side of `n` pairs, (n, 2)."""
    if pairing == "shared":
        one = rng.integers(0, n_sources, size=n)
        return np.stack([one, one], axis=1)
    return rng.integers(0, n_sources, size=(n, 2))


def _label_score(cfg, texts: list[str], returns: np.ndarray, misspecified: np.ndarray):
    """What the labeller compares: the true return, plus `length_bonus` per response word for
    the mis-specified labeller (the default pool compares the returns themselves)."""
    if not cfg.misspecified_sources:
        return returns
    words = np.array([len(t.split()) - 1 for t in texts])  # `<eos>` is not a word
    return returns + cfg.length_bonus * words * misspecified


def _draw_side(task: Task, sources, names, prompts: Prompts, which: np.ndarray, rng):
    """One response per prompt, from the source policy named by `which`."""
    texts, returns = [""] * len(prompts), np.zeros(len(prompts))
    for j, name in enumerate(names):
        idx = np.flatnonzero(which == j)
        _, resp, ret = sample_texts(task, sources[name], prompts.subset(idx), rng)
        for i, r, g in zip(idx, resp, ret, strict=True):
            texts[i], returns[i] = r, g
    return texts, returns


def eval_prompts(task: Task) -> Prompts:
    """Held-out prompts: drawn from their own stream, excluding prompts seen in the demos."""
    seen = set(list(demos_split(task, "train")["prompt"]))
    rng = stream(task, "eval_prompts", "test")
    need = task.config.n_eval_prompts
    pool = sample_prompts(task, 4 * need, rng)
    texts = [prompt_text(task, k, w) for k, w in zip(pool.topics, pool.words, strict=True)]
    keep = [i for i, t in enumerate(texts) if t not in seen][:need]
    if len(keep) < need:
        raise ValueError("could not draw enough held-out eval prompts; raise the vocabulary")
    return pool.subset(np.array(keep))


def write_datasets(task: Task, out: Path) -> dict[str, int]:
    """Save every dataset under `out/<name>` with `save_to_disk`; return the row counts."""
    counts = {}
    builders = {"pretrain": pretrain_split, "demos": demos_split, "preferences": preferences_split}
    for name, build in builders.items():
        dd = DatasetDict({split: build(task, split) for split in ("train", "test")})
        dd.save_to_disk(str(out / name))
        counts.update({f"{name}/{s}": len(d) for s, d in dd.items()})
    prompts = eval_prompts(task)
    texts = [prompt_text(task, k, w) for k, w in zip(prompts.topics, prompts.words, strict=True)]
    Dataset.from_dict({"prompt": texts}).save_to_disk(str(out / "eval_prompts"))
    counts["eval_prompts"] = len(texts)
    return counts
