"""Configuration of the synthetic benchmark: a toy language with a known reward.

Every number that shapes the toy language, its reward, its expert and the datasets written
from it lives here, so that a task is fully determined by (config, seed) and a config hash can
key the on-disk cache of the pretrained base model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class SyntheticConfig:
    """All knobs of the benchmark; the defaults keep every method's quickstart run to minutes
    on CPU."""

    seed: int = 0
    # --- language
    n_words: int = 48
    n_synonym_pairs: int = 6
    n_topics: int = 8
    dirichlet_concentration: float = 0.3
    mean_length: float = 12.0
    horizon: int = 24
    prompt_words_min: int = 2
    prompt_words_max: int = 5
    # --- true reward
    topic_liked_per_topic: int = 4
    topic_disliked_per_topic: int = 3
    topic_reward: float = 1.0
    n_good_bigrams: int = 40
    n_bad_bigrams: int = 40
    bigram_reward: float = 0.75
    end_window: tuple[int, int] = (8, 14)
    end_bonus: float = 1.5
    horizon_penalty: float = 2.0
    # --- expert, and the style tilt of the styled demonstrator
    beta: float = 1.0
    style_factor: float = 4.0
    # --- datasets
    n_pretrain: int = 20000
    n_pretrain_test: int = 1000
    n_demos: int = 2000
    n_demos_test: int = 200
    # A source name (expert, styled, style_<i>), or a list of them: each demonstration then
    # comes from one of the listed demonstrators, drawn uniformly.
    demonstrator: str | tuple[str, ...] = "styled"
    # Strongly styled demonstrators style_0 … style_<n-1>: π* with a word set of their own made
    # `demo_style_factor` times likelier at every step (disjoint sets of `demo_style_words`).
    n_demo_styles: int = 0
    demo_style_words: int = 4
    demo_style_factor: float = 8.0
    n_preferences: int = 2000
    n_preferences_test: int = 500
    n_eval_prompts: int = 256
    ref_temperatures: tuple[float, ...] = (0.8, 1.0, 1.3)
    partial_betas: tuple[float, ...] = (2.0, 4.0)
    label_temperature: float = 1.0
    # independent: each side of a pair from its own source; shared: both from one source
    preference_pairing: str = "independent"
    # Pairs with a side from one of these sources are labelled by r* plus `length_bonus` per
    # response word (a mis-specified labeller) instead of r*.
    misspecified_sources: tuple[str, ...] = ()
    length_bonus: float = 0.0
    # --- tiny model and its pretraining
    model: dict[str, Any] = field(
        default_factory=lambda: {
            "hidden_size": 96,
            "intermediate_size": 256,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
        }
    )
    pretrain_steps: int = 1500
    pretrain_batch_size: int = 64
    pretrain_lr: float = 3e-3

    def __post_init__(self) -> None:
        self.end_window = tuple(self.end_window)  # type: ignore[assignment]
        self.ref_temperatures = tuple(self.ref_temperatures)
        self.partial_betas = tuple(self.partial_betas)
        self.misspecified_sources = tuple(self.misspecified_sources)
        if isinstance(self.demonstrator, (list, tuple)):
            self.demonstrator = tuple(self.demonstrator)
        if self.n_synonym_pairs * 2 > self.n_words:
            raise ValueError("n_synonym_pairs * 2 must not exceed n_words")
        if not 2 <= self.horizon <= 128:
            raise ValueError("horizon must be in [2, 128]")
        if not 1 <= self.prompt_words_min <= self.prompt_words_max:
            raise ValueError("need 1 <= prompt_words_min <= prompt_words_max")
        if self.mean_length <= 1:
            raise ValueError("mean_length must exceed 1")
        if self.beta <= 0 or self.label_temperature <= 0:
            raise ValueError("beta and label_temperature must be positive")
        self._check_demonstrators()
        self._check_preference_pool()
        lo, hi = self.end_window
        if not 1 <= lo <= hi < self.horizon:
            raise ValueError("end_window must satisfy 1 <= lo <= hi < horizon")

    def _check_demonstrators(self) -> None:
        if self.n_demo_styles < 0 or self.demo_style_words < 1 or self.demo_style_factor <= 0:
            raise ValueError(
                "need n_demo_styles >= 0, demo_style_words >= 1 and demo_style_factor > 0"
            )
        plain = self.n_words - 2 * self.n_synonym_pairs
        if self.n_demo_styles * self.demo_style_words > plain:
            raise ValueError(
                f"n_demo_styles * demo_style_words must not exceed the {plain} words outside "
                "the synonym pairs"
            )
        known = ("expert", "styled", *(f"style_{i}" for i in range(self.n_demo_styles)))
        names = self.demonstrator_names()
        if (
            not isinstance(self.demonstrator, (str, tuple))
            or not names
            or any(name not in known for name in names)
            or len(set(names)) < len(names)
        ):
            raise ValueError(
                f"demonstrator must be one of {', '.join(known)} or a list of distinct ones, got "
                f"{self.demonstrator!r}"
            )

    def _check_preference_pool(self) -> None:
        if self.preference_pairing not in ("independent", "shared"):
            raise ValueError("preference_pairing must be 'independent' or 'shared'")
        sources = self.preference_source_names()
        unknown = [s for s in self.misspecified_sources if s not in sources]
        if unknown:
            raise ValueError(
                f"misspecified_sources: unknown source {unknown[0]!r}; the preference sources "
                f"are {', '.join(sources)}"
            )
        if self.misspecified_sources and self.length_bonus == 0:
            raise ValueError("misspecified_sources needs a non-zero length_bonus")

    def demonstrator_names(self) -> tuple[str, ...]:
        """The demonstrators the `demos` dataset is drawn from (one, or a uniform mixture)."""
        if isinstance(self.demonstrator, str):
            return (self.demonstrator,)
        return self.demonstrator

    def preference_source_names(self) -> list[str]:
        """The sources of the preference pairs: π_ref at temperatures, then partial experts."""
        names = [f"ref_T{t:g}" for t in self.ref_temperatures]
        names += [f"beta_{b:g}" for b in self.partial_betas]
        return list(dict.fromkeys(names))  # a repeated value names one source

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyntheticConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown synthetic config keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> SyntheticConfig:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of config keys")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from err

    def pretrain_hash(self) -> str:
        """Hash of everything that determines π_init (language, model and pretraining).

        Options that only shape the demonstrations and the preference pool are left out, so a
        data variant of a task reuses its π_init."""
        keys = (
            "seed n_words n_synonym_pairs n_topics dirichlet_concentration mean_length horizon "
            "prompt_words_min prompt_words_max n_pretrain model pretrain_steps "
            "pretrain_batch_size pretrain_lr"
        ).split()
        blob = json.dumps({k: self.to_dict()[k] for k in keys}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
