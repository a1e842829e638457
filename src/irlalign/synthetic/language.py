"""The toy language: vocabulary, reference Markov chain π_ref, prompts and the true reward r*.

Tabular conventions used across `irlalign.synthetic`:

- an *action index* is 0..W-1 for the W words and W for `<eos>` (A = W + 1 actions);
- a *state* is (topic k, previous word w, response position t); the previous word of the first
  response token is the last prompt word, so every state has a word as its predecessor;
- tables are numpy arrays: `ref_words (W, A)`, rewards `(H, K, W, A)`, policies `(H, K, W, A)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from irlalign.synthetic.config import SyntheticConfig

PAD, BOS, EOS, SEP = "<pad>", "<bos>", "<eos>", "<sep>"
SPECIAL_TOKENS = (PAD, BOS, EOS, SEP)
# Synonym pairs come first: word 2i and word 2i+1 are synonyms for i < n_synonym_pairs.
WORDS = (
    "big large small tiny fast quick happy glad start begin end finish "
    "the a cat dog sun moon tree river road house city bird fish ship car book song rain "
    "snow wind fire stone red blue green old new good bad run walk see find make take go"
).split()
TOPICS = "food sport music travel science weather garden market".split()


def word_list(n_words: int) -> list[str]:
    """The first `n_words` readable words, padded with `w<i>` names past the fixed list."""
    return [WORDS[i] if i < len(WORDS) else f"w{i}" for i in range(n_words)]


def topic_list(n_topics: int) -> list[str]:
    return [TOPICS[i] if i < len(TOPICS) else f"topic{i}" for i in range(n_topics)]


def word_classes(n_words: int, n_pairs: int) -> np.ndarray:
    """Class id of each word: the two words of a synonym pair share one class."""
    cls = np.empty(n_words, dtype=np.int64)
    for i in range(n_words):
        cls[i] = i // 2 if i < 2 * n_pairs else i - n_pairs
    return cls


def eos_probability(mean_length: float, horizon: int) -> float:
    """Per-step `<eos>` probability p with E[min(Geometric(p), H)] = mean_length (bisection)."""
    lo, hi = 1e-6, 1.0
    for _ in range(200):
        p = 0.5 * (lo + hi)
        mean = (1.0 - (1.0 - p) ** horizon) / p
        lo, hi = (p, hi) if mean > mean_length else (lo, p)
    return 0.5 * (lo + hi)


@dataclass
class Task:
    """A fully specified synthetic task: the tables r*, π_ref are built from these arrays."""

    config: SyntheticConfig
    ref_words: np.ndarray  # (W, A) π_ref(a | prev word) away from the horizon
    r_topic: np.ndarray  # (K, A)
    r_pair: np.ndarray  # (W, A)
    r_end: np.ndarray  # (H, A)

    @property
    def words(self) -> list[str]:
        return word_list(self.config.n_words)

    @property
    def topics(self) -> list[str]:
        return topic_list(self.config.n_topics)

    @property
    def n_actions(self) -> int:
        return self.config.n_words + 1

    @property
    def eos_action(self) -> int:
        return self.config.n_words

    def synonym_pairs(self) -> list[tuple[int, int]]:
        return [(2 * i, 2 * i + 1) for i in range(self.config.n_synonym_pairs)]

    def reward_table(self) -> np.ndarray:
        """r*(t, k, w, a) = R_topic[k, a] + R_pair[w, a] + R_end[t, a], shape (H, K, W, A)."""
        return (
            self.r_topic[None, :, None, :]
            + self.r_pair[None, None, :, :]
            + self.r_end[:, None, None, :]
        )

    def ref_table(self, temperature: float = 1.0) -> np.ndarray:
        """π_ref at a sampling temperature as a (H, K, W, A) table; `<eos>` forced at t = H-1."""
        probs = self.ref_words
        if temperature != 1.0:  # at T = 1 keep the drawn table bit for bit
            with np.errstate(divide="ignore"):
                logits = np.log(self.ref_words) / temperature
            probs = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
        cfg = self.config
        table = np.broadcast_to(probs, (cfg.horizon, cfg.n_topics, *probs.shape)).copy()
        table[-1] = 0.0
        table[-1, :, :, self.eos_action] = 1.0
        return table

    def prompt_word_chain(self) -> np.ndarray:
        """Transition matrix over words used inside prompts: π_ref without `<eos>`, renormalised."""
        words = self.ref_words[:, : self.config.n_words]
        return words / words.sum(axis=1, keepdims=True)


def build_task(config: SyntheticConfig) -> Task:
    """Draw the reference chain and the sparse true reward from `config.seed`."""
    rng = np.random.default_rng(config.seed)
    n_w, n_pairs = config.n_words, config.n_synonym_pairs
    cls = word_classes(n_w, n_pairs)
    n_cls = n_w - n_pairs
    p_eos = eos_probability(config.mean_length, config.horizon)
    class_rows = rng.dirichlet(np.full(n_cls, config.dirichlet_concentration), size=n_cls)
    class_size = np.bincount(cls, minlength=n_cls)
    # Split a pair's class mass equally so that synonyms share every reference probability.
    word_rows = class_rows[cls][:, cls] / class_size[cls][None, :]
    ref_words = np.concatenate([(1 - p_eos) * word_rows, np.full((n_w, 1), p_eos)], axis=1)
    r_topic = _topic_reward(config, rng, cls, n_cls)
    r_pair = _pair_reward(config, rng, cls, class_rows)
    r_end = np.zeros((config.horizon, n_w + 1))
    lo, hi = config.end_window
    r_end[lo : hi + 1, n_w] = config.end_bonus
    r_end[config.horizon - 1, n_w] = -config.horizon_penalty
    return Task(config, ref_words, r_topic, r_pair, r_end)


def _topic_reward(cfg: SyntheticConfig, rng: np.random.Generator, cls, n_cls) -> np.ndarray:
    r_cls = np.zeros((cfg.n_topics, n_cls))
    n_like, n_dislike = cfg.topic_liked_per_topic, cfg.topic_disliked_per_topic
    for k in range(cfg.n_topics):
        chosen = rng.choice(n_cls, size=n_like + n_dislike, replace=False)
        r_cls[k, chosen[:n_like]] = cfg.topic_reward
        r_cls[k, chosen[n_like:]] = -cfg.topic_reward
    return np.concatenate([r_cls[:, cls], np.zeros((cfg.n_topics, 1))], axis=1)


def _pair_reward(cfg: SyntheticConfig, rng: np.random.Generator, cls, class_rows) -> np.ndarray:
    """Good and bad bigrams, drawn in proportion to how often π_ref produces them."""
    n_cls = class_rows.shape[0]
    weights = (class_rows / class_rows.sum()).ravel()
    n_pick = min(cfg.n_good_bigrams + cfg.n_bad_bigrams, int((weights > 0).sum()))
    flat = rng.choice(n_cls * n_cls, size=n_pick, replace=False, p=weights)
    r_cls = np.zeros(n_cls * n_cls)
    r_cls[flat[: cfg.n_good_bigrams]] = cfg.bigram_reward
    r_cls[flat[cfg.n_good_bigrams :]] = -cfg.bigram_reward
    r_cls = r_cls.reshape(n_cls, n_cls)
    n_w = cfg.n_words
    return np.concatenate([r_cls[cls][:, cls], np.zeros((n_w, 1))], axis=1)
