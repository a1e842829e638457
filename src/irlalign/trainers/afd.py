"""AfD, alignment from demonstrations (Sun & van der Schaar, arXiv 2405.15624; specs/afd.md).

The pipeline of §3.5, one banner per phase: SFT on the demonstrations (or a given π_SFT) →
samples from π_init and π_SFT for the same prompts with identical settings → the IRL reward
model of the chosen variant, a BCE classifier whose logit is the reward → best-of-N curves over
an N grid with the learned reward and the zero-training log-ratio rewards → optionally RL
against the standardised logit with a KL penalty to π_SFT (an extension, §4.1).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from irlalign.generation.sampling import HFSampler, SamplingConfig
from irlalign.trainers import afd_steps as steps
from irlalign.trainers import online

VARIANTS = ("init_sft", "init_demo", "sft_demo", "bt_pairwise")


@dataclass
class AfDConfig:
    # Reward-model variants to train and compare on one shared best-of-N pool; the first is the
    # one RL uses. init_sft (the paper's recommendation), init_demo, sft_demo, bt_pairwise.
    variants: tuple[str, ...] = ("init_sft",)
    sft_model: str | None = None  # a given π_SFT folder; otherwise SFT on the demonstrations
    sft_training: dict[str, Any] = field(default_factory=dict)  # TrainingArguments keywords
    rm_training: dict[str, Any] = field(default_factory=dict)  # TrainingArguments keywords
    preferences: str | None = None  # prompt/chosen/rejected data for the bt_pairwise variant
    samples_per_prompt: int = 1  # k per source and prompt (classes stay 1:1)
    heldout_fraction: float = 0.05  # prompts held out for discriminator accuracy
    turn_markers: tuple[str, ...] = ("\n\nHuman",)
    sampling: Any = field(default_factory=lambda: SamplingConfig(top_p=0.95, max_new_tokens=128))
    bon_n: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    bon_prompts: int | None = 256  # held-out synthetic prompts for the curves
    bon_estimator: str = "exact"  # or "first" (the first N samples of the pool)
    rl: str = "none"  # "none", "rloo" or "ppo" (extension: RL against the standardised logit)
    rl_method: dict[str, Any] = field(default_factory=dict)  # RLOOConfig / PPOConfig fields
    rl_training: dict[str, Any] = field(default_factory=dict)  # LoopArgs fields

    def __post_init__(self) -> None:
        self.sampling = online.sampling_config(self.sampling)
        self.turn_markers, self.bon_n = tuple(self.turn_markers), tuple(self.bon_n)
        self.variants = (self.variants,) if isinstance(self.variants, str) else tuple(self.variants)
        unknown = [v for v in self.variants if v not in VARIANTS]
        if not self.variants or unknown or len(set(self.variants)) < len(self.variants):
            raise ValueError(f"variants: a list of distinct names from {', '.join(VARIANTS)}")
        if "bt_pairwise" in self.variants and not self.preferences:
            raise ValueError("variant bt_pairwise needs `preferences` (prompt/chosen/rejected)")
        if self.samples_per_prompt < 1 or not 0 <= self.heldout_fraction < 1:
            raise ValueError("samples_per_prompt >= 1 and 0 <= heldout_fraction < 1 required")
        if self.bon_estimator not in ("exact", "first") or self.rl not in ("none", "rloo", "ppo"):
            raise ValueError("bon_estimator is exact|first; rl is none|rloo|ppo")
        if not self.bon_n or min(self.bon_n) < 1:
            raise ValueError("bon_n must be a non-empty list of N >= 1")


def _sub_config(cfg, method: str, out: Path, model_path: str, data: str, method_raw, training):
    """A RunConfig for one phase, in its own sub-folder of the run."""
    from irlalign.training import resolve

    raw = {
        "model": {**dataclasses.asdict(cfg.model), "path": model_path},
        "data": {**dataclasses.asdict(cfg.data), "train": data},
        "method": method_raw,
        "training": {
            "seed": cfg.training.get("seed", 42),
            "use_cpu": cfg.training.get("use_cpu", False),
            **training,
            "output_dir": str(out),
        },
    }
    return resolve(method, raw)


def train_afd(cfg) -> dict[str, Any]:
    """Run the AfD pipeline; writes the phases' folders and `eval.json`; returns its content."""
    from irlalign.modeling.load import ModelOptions, load_model

    m: AfDConfig = cfg.method_config
    run_dir = cfg.run_dir
    run, seed, tokenizer, demos = steps.open_run(cfg)
    results: dict[str, Any] = {"variants": list(m.variants), "label": "AfD (paper: best-of-N)"}

    # ==== 1. π_SFT: given, or SFT on the demonstrations (forward-KL AfD) =====================
    sft_path = m.sft_model
    if sft_path is None:
        from irlalign.training import train

        sub = _sub_config(
            cfg, "sft", run_dir / "sft", cfg.model.path, cfg.data.train, {}, m.sft_training
        )
        sft_path = train(sub)["final_checkpoint"]
    results["sft_model"] = str(sft_path)
    init = load_model(ModelOptions(path=cfg.model.path))
    sft = load_model(ModelOptions(path=str(sft_path)))

    # ==== 2. samples from π_init and π_SFT: same prompts, same settings, turn-truncated =====
    def clean(rollouts):
        return steps.responses(rollouts, m.turn_markers)

    k = m.samples_per_prompt
    train_prompts = [p for p in demos.prompts for _ in range(k)]
    import torch

    torch.manual_seed(seed)
    init_texts = clean(HFSampler(init, tokenizer, m.sampling).sample(demos.prompts, k))
    torch.manual_seed(seed)
    sft_texts = clean(HFSampler(sft, tokenizer, m.sampling).sample(demos.prompts, k))
    demo_texts = [
        steps.truncate_turn(c, m.turn_markers) for c in demos.completions for _ in range(k)
    ]
    steps.write_jsonl(
        run_dir / "samples.jsonl",
        [
            {"prompt": p, "init": a, "sft": b, "demo": c}
            for p, a, b, c in zip(train_prompts, init_texts, sft_texts, demo_texts, strict=True)
        ],
    )

    # ==== 3. the IRL reward models of the variants (BCE; reward = logit) ====================
    texts = (train_prompts, init_texts, sft_texts, demo_texts)
    rms = {v: _reward_model(cfg, m, v, tokenizer, texts, seed) for v in m.variants}
    results["reward_models"] = {v: {"path": str(p), **info} for v, (p, info) in rms.items()}

    # ==== 4. best-of-N over an N grid on one pool, with the log-ratio baselines =============
    if cfg.eval.synthetic_task:
        paths = {v: p for v, (p, _) in rms.items()}
        results["best_of_n"] = _bon_curves(cfg, m, paths, sft, init, tokenizer, clean)

    # ==== 5. extension: RL against the standardised logit, KL to π_SFT =======================
    if m.rl != "none":
        results["rl"] = _rl(cfg, m, rms[m.variants[0]][0], str(sft_path))
    run.write_eval(results)
    return results


def _reward_model(cfg, m: AfDConfig, variant: str, tokenizer, texts, seed):
    """Train one variant's RM; report held-out accuracy and the length-only baseline."""
    from irlalign.modeling.reward import load_reward_model

    prompts, init_texts, sft_texts, demo_texts = texts
    out = cfg.run_dir / f"rm_{variant}"
    if variant == "bt_pairwise":  # the preference baseline: Bradley–Terry on labelled pairs
        from irlalign.training import train

        sub = _sub_config(cfg, "reward", out, cfg.model.path, m.preferences, {}, m.rm_training)
        path = Path(train(sub)["final_checkpoint"])
        return path, {"loss": "bradley_terry"}
    pos, neg = {
        "init_sft": (sft_texts, init_texts),
        "init_demo": (demo_texts, init_texts),
        "sft_demo": (demo_texts, sft_texts),
    }[variant]
    unique = list(dict.fromkeys(prompts))
    held_prompts = set(np.array(unique)[steps.heldout_split(len(unique), m.heldout_fraction, seed)])
    held = [p in held_prompts for p in prompts]
    pick = lambda xs, flag: [x for x, h in zip(xs, held, strict=True) if h == flag]  # noqa: E731
    train_rows = steps.classifier_rows(pick(prompts, False), pick(pos, False), pick(neg, False))
    test_rows = steps.classifier_rows(pick(prompts, True), pick(pos, True), pick(neg, True))
    path = steps.train_classifier(cfg.model.path, tokenizer, train_rows, out, m.rm_training, seed)
    rm = load_reward_model(path)
    lengths = lambda rows: [len(tokenizer(t, add_special_tokens=False).input_ids) for t in rows[1]]  # noqa: E731
    return path, {
        "loss": "bce",
        "positives": variant.split("_")[1],
        "negatives": variant.split("_")[0],
        "train_accuracy": steps.classifier_accuracy(rm, *train_rows),
        "heldout_accuracy": steps.classifier_accuracy(rm, *test_rows),
        "length_baseline_accuracy": steps.length_baseline_accuracy(
            lengths(train_rows), train_rows[2], lengths(test_rows), test_rows[2]
        ),
        "heldout_pairs": len(test_rows[0]) // 2,
    }


def _bon_curves(cfg, m: AfDConfig, rm_paths, sft, init, tokenizer, clean) -> dict[str, Any]:
    import torch

    from irlalign.modeling.log_ratio import LogRatioReward
    from irlalign.modeling.reward import load_reward_model
    from irlalign.synthetic import best_of_n as bon

    task_dir = cfg.eval.synthetic_task
    prompts = bon.eval_prompt_texts(task_dir, m.bon_prompts)
    torch.manual_seed(cfg.eval.seed)
    pool = bon.draw_pool(
        task_dir, HFSampler(sft, tokenizer, m.sampling), prompts, max(m.bon_n), clean
    )
    init_pool = bon.draw_pool(task_dir, HFSampler(init, tokenizer, m.sampling), prompts, 1, clean)
    means = bon.reference_means(task_dir, prompts)
    init_mean = float(init_pool.gold.mean())
    rankers = {
        **{v: load_reward_model(p) for v, p in rm_paths.items()},
        "log_ratio_sum": LogRatioReward(sft, init, tokenizer),
        "log_ratio_mean": LogRatioReward(sft, init, tokenizer, normalise=True),
    }
    exact = m.bon_estimator == "exact"
    curves = {
        name: bon.curve(
            rm.score(pool.prompts, pool.responses), pool, m.bon_n, means, init_mean, exact
        )
        for name, rm in rankers.items()
    }
    return {
        "pool_size": max(m.bon_n),
        "prompts": len(prompts),
        "estimator": m.bon_estimator,
        "reference_means": {**means, "init": init_mean},
        "curves": curves,
    }


def _rl(cfg, m: AfDConfig, rm_path: Path, sft_path: str) -> dict[str, Any]:
    """RLOO/PPO from π_SFT against the standardised RM logit, KL to π_SFT (spec §4.1)."""
    from irlalign.training import train

    method = {"reward_mode": "terminal", "reward_norm": "initial", "kl_coef": 0.05, **m.rl_method}
    method["reward_model"] = str(rm_path)
    training = {"max_steps": 100, **m.rl_training}
    sub = _sub_config(cfg, m.rl, cfg.run_dir / "rl", sft_path, cfg.data.train, method, training)
    sub.eval = cfg.eval
    out = train(sub)
    return {"label": "extension (not in the paper)", **json.loads(json.dumps(out, default=str))}
