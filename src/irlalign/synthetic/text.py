"""Prompts of the toy language and the conversion between action indices and text.

A prompt reads `<bos> topic w1 … wk <sep>` and a response `y1 … yn <eos>`; these strings are what
the datasets hold, exactly as real data would hold chat text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from irlalign.synthetic.language import BOS, EOS, SEP, Task


@dataclass
class Prompts:
    topics: np.ndarray  # (N,) topic index
    words: list[np.ndarray]  # N arrays of word indices

    @property
    def last_words(self) -> np.ndarray:
        return np.array([w[-1] for w in self.words], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.topics)

    def subset(self, index: np.ndarray) -> Prompts:
        return Prompts(self.topics[index], [self.words[i] for i in index])


def sample_prompts(task: Task, n: int, rng: np.random.Generator) -> Prompts:
    """Topic uniform, length uniform in [min, max], first word uniform, the rest from π_ref."""
    cfg = task.config
    chain = task.prompt_word_chain()
    topics = rng.integers(0, cfg.n_topics, size=n)
    lengths = rng.integers(cfg.prompt_words_min, cfg.prompt_words_max + 1, size=n)
    words = []
    for length in lengths:
        seq = [int(rng.integers(cfg.n_words))]
        for _ in range(length - 1):
            seq.append(int(rng.choice(cfg.n_words, p=chain[seq[-1]])))
        words.append(np.array(seq, dtype=np.int64))
    return Prompts(topics, words)


def prompt_text(task: Task, topic: int, words: np.ndarray) -> str:
    vocab = task.words
    return " ".join([BOS, task.topics[topic], *(vocab[w] for w in words), SEP])


def response_text(task: Task, actions: np.ndarray) -> str:
    vocab = task.words
    return " ".join(EOS if a == task.eos_action else vocab[a] for a in actions)


def parse_prompt(task: Task, text: str) -> tuple[int, np.ndarray]:
    """(topic, word indices) of a prompt string; raises ValueError on anything else."""
    tokens = text.split()
    if len(tokens) < 4 or tokens[0] != BOS or tokens[-1] != SEP:
        raise ValueError(f"not a synthetic prompt: {text!r}")
    topic_ids = {t: i for i, t in enumerate(task.topics)}
    if tokens[1] not in topic_ids:
        raise ValueError(f"unknown topic {tokens[1]!r} in prompt {text!r}")
    return topic_ids[tokens[1]], np.array([_word_index(task, w) for w in tokens[2:-1]])


def parse_response(task: Task, text: str) -> np.ndarray:
    """Action indices of a response string, which must end with `<eos>` within the horizon."""
    tokens = text.split()
    if not tokens or tokens[-1] != EOS or EOS in tokens[:-1]:
        raise ValueError(f"a response must end with exactly one {EOS}: {text!r}")
    if len(tokens) > task.config.horizon:
        raise ValueError(f"response longer than the horizon {task.config.horizon}: {text!r}")
    return np.array([_word_index(task, w) for w in tokens[:-1]] + [task.eos_action])


def _word_index(task: Task, word: str) -> int:
    try:
        return task.words.index(word)
    except ValueError:
        raise ValueError(f"unknown word {word!r}") from None
