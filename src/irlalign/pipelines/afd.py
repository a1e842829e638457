"""AfD, alignment from demonstrations (Sun & van der Schaar, arXiv 2405.15624).

The pipeline, one banner per phase: SFT on the demonstrations (or a given π_SFT) →
samples from π_init and π_SFT for the same prompts with identical settings → the IRL reward
model of the chosen variant, a BCE classifier whose logit is the reward → best-of-N curves over
an N grid with the learned reward and the zero-training log-ratio rewards → optionally RL
against the standardised logit with a KL penalty to π_SFT (an extension: the paper stops at
best-of-N).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from irlalign.generation.sampling import HFSampler, SamplingConfig
from irlalign.pipelines import parts
from irlalign.runs import PhaseLog, fingerprint, write_jsonl

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
    # The RL phase's `method` (RLOOConfig / PPOConfig fields) and `training` (LoopArgs fields)
    # over the defaults every pipeline's RL phase shares (`irlalign.pipelines.parts.rl_phase`).
    rl_method: dict[str, Any] = field(default_factory=dict)
    rl_training: dict[str, Any] = field(default_factory=dict)  # default max_steps 100

    def __post_init__(self) -> None:
        self.sampling = SamplingConfig.coerce(self.sampling)
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


def train_afd(cfg, run_child) -> dict[str, Any]:
    """Run the AfD pipeline; writes the phases' folders and `eval.json`; returns its content.
    ``run_child(method_name, cfg, **phase)`` runs the SFT, Bradley–Terry and RL phases."""
    from irlalign.modeling.load import ModelOptions, load_model

    afd: AfDConfig = cfg.method_config
    _check_push(cfg, afd)
    run, _, tokenizer, demos = parts.open_run(cfg)
    results: dict[str, Any] = {"variants": list(afd.variants), "label": "AfD (paper: best-of-N)"}

    # ==== 1. π_SFT: given, or SFT on the demonstrations (forward-KL AfD) =====================
    sft_path = afd.sft_model
    if sft_path is None:
        sft_path = run_child(
            "sft",
            cfg,
            folder="sft",
            model=cfg.model.path,
            data=_demonstration_rows(cfg),
            training=afd.sft_training,
        )["final_checkpoint"]
    results["sft_model"] = str(sft_path)
    init = load_model(ModelOptions(path=cfg.model.path))
    sft = load_model(ModelOptions(path=str(sft_path)))

    # ==== 2. samples from π_init and π_SFT: same prompts, same settings, turn-truncated =====
    def clean(rollouts):
        return parts.responses(rollouts, afd.turn_markers)

    texts = _samples(cfg, afd, demos, (init, sft, str(sft_path)), tokenizer, clean)

    # ==== 3. the IRL reward models of the variants (BCE; reward = logit) ====================
    rms = {v: _reward_model(cfg, afd, run_child, v, tokenizer, texts) for v in afd.variants}
    results["reward_models"] = {v: {"path": str(p), **info} for v, (p, info) in rms.items()}

    # ==== 4. best-of-N over an N grid on one pool, with the log-ratio baselines =============
    if cfg.eval.synthetic_task:
        paths = {v: p for v, (p, _) in rms.items()}
        models = (init, sft, str(sft_path))
        results["best_of_n"] = _bon_curves(cfg, afd, paths, models, tokenizer, clean)

    # ==== 5. extension: RL against the standardised logit, KL to π_SFT =======================
    if afd.rl != "none":
        results["rl"] = _rl(cfg, afd, run_child, rms[afd.variants[0]][0], str(sft_path))
    run.write_eval(results)
    return _publish(cfg, afd, results, run)


def _check_push(cfg, afd: AfDConfig) -> None:
    """AfD pushes the RL policy, else the π_SFT it trained; a given π_SFT is not its own."""
    from irlalign.cards import check_pipeline_push

    nothing = afd.rl == "none" and afd.sft_model is not None
    why = "method.rl is 'none' and method.sft_model is given (AfD trains only reward models)"
    check_pipeline_push(cfg.training, None if nothing else "policy", why)


def _publish(cfg, afd: AfDConfig, results: dict[str, Any], run) -> dict[str, Any]:
    """With `training.push_to_hub`: the RL policy, or (without RL) π_SFT, for best-of-N."""
    from irlalign.cards import phase_folder, publish_pipeline

    if "rl" in results:
        policy, metrics = results["rl"]["final_checkpoint"], results["rl"].get("synthetic")
        what = (
            f"π_SFT trained with {afd.rl.upper()} against the standardised logit of the "
            f"{afd.variants[0]} reward model (an extension, not in the paper)"
        )
    else:
        policy, metrics = results["sft_model"], None
        what = (
            "π_SFT, the policy AfD's best-of-N samples from (the paper's use of the reward "
            "models; they are not pushed)"
        )
    which = f"The final policy of the AfD pipeline: {what}: `{phase_folder(policy, cfg.run_dir)}`."
    return publish_pipeline(cfg, results, str(policy), which, run.write_eval, metrics)


# A rerun resumes at phase boundaries: the SFT, Bradley–Terry and RL phases are runs that
# `run_child` reuses when they finished with the same config and inputs; the samples, each
# discriminator and the best-of-N curves are recorded in `phases.json` with the key of what they
# were computed from (configs, and the fingerprints of the models they read) and reused likewise.


def _samples(cfg, afd: AfDConfig, demos, models, tokenizer, clean) -> tuple[list[str], ...]:
    """Phase 2: (prompts, π_init samples, π_SFT samples, demonstrations), one row per sample;
    `samples.jsonl` read back when it was drawn from the same models with the same settings."""
    import torch

    init, sft, sft_path = models
    k, path, phases = afd.samples_per_prompt, cfg.run_dir / "samples.jsonl", PhaseLog(cfg.run_dir)
    key = {
        "init": fingerprint(cfg.model.path),
        "sft": fingerprint(sft_path),
        "model": dataclasses.asdict(cfg.model),
        "data": [_demonstration_rows(cfg), fingerprint(cfg.data.train)],
        "seed": cfg.seed,
        "method": [k, dataclasses.asdict(afd.sampling), afd.turn_markers],
    }
    if phases.reusable("samples", key, [path]):
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        return tuple([r[c] for r in rows] for c in ("prompt", "init", "sft", "demo"))
    train_prompts = [p for p in demos.prompts for _ in range(k)]
    torch.manual_seed(cfg.seed)
    init_texts = clean(HFSampler(init, tokenizer, afd.sampling).sample(demos.prompts, k))
    torch.manual_seed(cfg.seed)
    sft_texts = clean(HFSampler(sft, tokenizer, afd.sampling).sample(demos.prompts, k))
    demo_texts = [
        parts.truncate_turn(c, afd.turn_markers) for c in demos.completions for _ in range(k)
    ]
    texts = (train_prompts, init_texts, sft_texts, demo_texts)
    write_jsonl(
        path,
        [{"prompt": p, "init": a, "sft": b, "demo": c} for p, a, b, c in zip(*texts, strict=True)],
    )
    phases.finish("samples", key, outputs=[path])
    return texts


def _demonstration_rows(cfg) -> dict[str, Any]:
    """The rows AfD reads its demonstrations (and RL prompts) from: the run's own data."""
    return {"train": cfg.data.train, "split": cfg.data.split, "max_rows": cfg.data.max_rows}


def _reward_model(cfg, afd: AfDConfig, run_child, variant: str, tokenizer, texts):
    """Train one variant's RM (or reuse the one trained on the same rows with the same
    settings); report held-out accuracy and the length-only baseline."""
    from irlalign.modeling.reward import load_reward_model

    prompts, init_texts, sft_texts, demo_texts = texts
    out = cfg.run_dir / f"rm_{variant}"
    seed = cfg.seed
    if variant == "bt_pairwise":  # the preference baseline: Bradley–Terry on labelled pairs
        out = run_child(
            "reward",
            cfg,
            folder=f"rm_{variant}",
            model=cfg.model.path,
            data={"train": afd.preferences},
            training=afd.rm_training,
        )
        return Path(out["final_checkpoint"]), {"loss": "bradley_terry"}
    pos, neg = {
        "init_sft": (sft_texts, init_texts),
        "init_demo": (demo_texts, init_texts),
        "sft_demo": (demo_texts, sft_texts),
    }[variant]
    unique = list(dict.fromkeys(prompts))
    held_prompts = set(
        np.array(unique)[parts.heldout_split(len(unique), afd.heldout_fraction, seed)]
    )
    held = [p in held_prompts for p in prompts]
    pick = lambda xs, flag: [x for x, h in zip(xs, held, strict=True) if h == flag]  # noqa: E731
    train_rows = parts.classifier_rows(pick(prompts, False), pick(pos, False), pick(neg, False))
    test_rows = parts.classifier_rows(pick(prompts, True), pick(pos, True), pick(neg, True))
    phases, name = PhaseLog(cfg.run_dir), f"rm_{variant}"
    rows = json.dumps([train_rows, test_rows]).encode()
    key = {
        "init": fingerprint(cfg.model.path),
        "model": dataclasses.asdict(cfg.model),
        "rows": hashlib.sha256(rows).hexdigest(),
        "training": afd.rm_training,
        "seed": seed,
    }
    done = phases.reusable(name, key, [out])
    if done:
        return out, done["result"]
    path = parts.train_classifier(cfg.model.path, tokenizer, train_rows, out, afd.rm_training, seed)
    info = _discriminator_info(variant, load_reward_model(path), tokenizer, train_rows, test_rows)
    phases.finish(name, key, info, outputs=[out])
    return path, info


def _discriminator_info(variant: str, rm, tokenizer, train_rows, test_rows) -> dict[str, Any]:
    """Held-out accuracy of a BCE discriminator and the length-only baseline's."""
    lengths = lambda rows: [len(tokenizer(t, add_special_tokens=False).input_ids) for t in rows[1]]  # noqa: E731
    return {
        "loss": "bce",
        "positives": variant.split("_")[1],
        "negatives": variant.split("_")[0],
        "train_accuracy": parts.classifier_accuracy(rm, *train_rows),
        "heldout_accuracy": parts.classifier_accuracy(rm, *test_rows),
        "length_baseline_accuracy": parts.length_baseline_accuracy(
            lengths(train_rows), train_rows[2], lengths(test_rows), test_rows[2]
        ),
        "heldout_pairs": len(test_rows[0]) // 2,
    }


def _bon_curves(cfg, afd: AfDConfig, rm_paths, models, tokenizer, clean) -> dict[str, Any]:
    """Phase 4, or its recorded curves when the same reward models and policies drew them."""
    init, sft, sft_path = models
    phases = PhaseLog(cfg.run_dir)
    key = {
        "rms": {v: fingerprint(p) for v, p in rm_paths.items()},
        "init": fingerprint(cfg.model.path),
        "sft": fingerprint(sft_path),
        "model": dataclasses.asdict(cfg.model),
        "eval": dataclasses.asdict(cfg.eval),
        "method": [dataclasses.asdict(afd.sampling), afd.turn_markers, afd.bon_n],
        "bon": [afd.bon_prompts, afd.bon_estimator],
    }
    done = phases.reusable("best_of_n", key)
    if done:
        return done["result"]
    curves = _draw_bon_curves(cfg, afd, rm_paths, sft, init, tokenizer, clean)
    phases.finish("best_of_n", key, curves)
    return curves


def _draw_bon_curves(cfg, afd: AfDConfig, rm_paths, sft, init, tokenizer, clean):
    import torch

    from irlalign.modeling.log_ratio import LogRatioReward
    from irlalign.modeling.reward import load_reward_model
    from irlalign.synthetic import best_of_n as bon

    task_dir = cfg.eval.synthetic_task
    prompts = bon.eval_prompt_texts(task_dir, afd.bon_prompts)
    torch.manual_seed(cfg.eval.seed)
    pool = bon.draw_pool(
        task_dir, HFSampler(sft, tokenizer, afd.sampling), prompts, max(afd.bon_n), clean
    )
    init_pool = bon.draw_pool(task_dir, HFSampler(init, tokenizer, afd.sampling), prompts, 1, clean)
    means = bon.reference_means(task_dir, prompts)
    init_mean = float(init_pool.gold.mean())
    rankers = {
        **{v: load_reward_model(p) for v, p in rm_paths.items()},
        "log_ratio_sum": LogRatioReward(sft, init, tokenizer),
        "log_ratio_mean": LogRatioReward(sft, init, tokenizer, normalise=True),
    }
    exact = afd.bon_estimator == "exact"
    curves = {
        name: bon.curve(
            rm.score(pool.prompts, pool.responses), pool, afd.bon_n, means, init_mean, exact
        )
        for name, rm in rankers.items()
    }
    return {
        "pool_size": max(afd.bon_n),
        "prompts": len(prompts),
        "estimator": afd.bon_estimator,
        "reference_means": {**means, "init": init_mean},
        "curves": curves,
    }


def _rl(cfg, afd: AfDConfig, run_child, rm_path: Path, sft_path: str) -> dict[str, Any]:
    """RLOO/PPO from π_SFT against the standardised RM logit, KL to π_SFT (the frozen copy of
    the starting policy)."""
    method, training = parts.rl_phase(cfg, afd.sampling, afd.rl_method, afd.rl_training, 100)
    method["reward_model"] = str(rm_path)
    out = parts.run_rl_phase(
        cfg, run_child, afd.rl, method, training, model=sft_path, data=_demonstration_rows(cfg)
    )
    return {"label": "extension (not in the paper)", **out}
