"""Iterative adversarial AfD, GAIL / AIRL style (specs/afd.md §4.2; an extension, not evaluated
in the paper). Start from π_0 = the configured model (π_SFT); for each round k:

1. sample π_k on the training prompts (same settings and turn truncation as everywhere);
2. retrain the discriminator: demonstrations (label 1) vs π_k samples (label 0), 1:1, BCE,
   from the previous round's weights or from scratch;
3. RL (RLOO by default) against the AIRL reward ℓ = log D − log(1 − D) or the GAIL reward
   softplus(ℓ) = −log(1 − D), standardised, with a KL penalty to π_SFT → π_{k+1}.

Each round writes `round_<k>/` (samples, discriminator, policy run, `round.json`); a finished
round is skipped on a rerun, so a run resumes at its last round boundary.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irlalign.generation.sampling import HFSampler, SamplingConfig
from irlalign.trainers import afd_steps as steps
from irlalign.trainers import online


@dataclass
class AdversarialConfig:
    rounds: int = 3
    reward: str = "airl"  # "airl": the logit ℓ; "gail": softplus(ℓ)
    positives: str = "demos"  # or "sft_samples": π_SFT samples, homogeneous with the policy
    disc_init: str = "continue"  # "continue" from the previous round, or "scratch"
    rm_training: dict[str, Any] = field(default_factory=dict)  # TrainingArguments keywords
    rl: str = "rloo"  # or "ppo"
    rl_method: dict[str, Any] = field(default_factory=dict)  # RLOOConfig / PPOConfig fields
    rl_training: dict[str, Any] = field(default_factory=dict)  # LoopArgs fields per round
    samples_per_prompt: int = 1
    heldout_fraction: float = 0.05
    turn_markers: tuple[str, ...] = ("\n\nHuman",)
    sampling: Any = field(default_factory=lambda: SamplingConfig(top_p=0.95, max_new_tokens=128))

    def __post_init__(self) -> None:
        self.sampling = online.sampling_config(self.sampling)
        self.turn_markers = tuple(self.turn_markers)
        if self.rounds < 1 or self.samples_per_prompt < 1:
            raise ValueError("rounds and samples_per_prompt must be >= 1")
        if self.reward not in ("airl", "gail") or self.rl not in ("rloo", "ppo"):
            raise ValueError("reward is airl|gail and rl is rloo|ppo")
        if self.positives not in ("demos", "sft_samples"):
            raise ValueError("positives is demos|sft_samples")
        if self.disc_init not in ("continue", "scratch"):
            raise ValueError("disc_init is continue|scratch")


def train_adversarial(cfg) -> dict[str, Any]:
    """Run the rounds; returns (and writes to `eval.json`) the per-round summaries."""
    from irlalign.modeling.load import load_model

    m: AdversarialConfig = cfg.method_config
    run_dir = cfg.run_dir
    run, seed, tokenizer, demos = steps.open_run(cfg)
    prompts = [p for p in demos.prompts for _ in range(m.samples_per_prompt)]
    positives = [steps.truncate_turn(c, m.turn_markers) for c in demos.completions]
    positives = [c for c in positives for _ in range(m.samples_per_prompt)]
    if m.positives == "sft_samples":
        positives = _sample(load_model(cfg.model), tokenizer, m, demos.prompts, seed)
    held = steps.heldout_split(len(prompts), m.heldout_fraction, seed)
    policy, disc, rounds = cfg.model.path, None, []
    for k in range(m.rounds):
        out = run_dir / f"round_{k}"
        done = out / "round.json"
        if done.exists():  # resume: this round finished before
            summary = json.loads(done.read_text())
        else:
            # ==== 1. samples of π_k ==========================================================
            pol = load_model(dataclasses.replace(cfg.model, path=policy, lora=None))
            negatives = _sample(pol, tokenizer, m, demos.prompts, seed + 1000 * (k + 1))
            steps.write_jsonl(
                out / "samples.jsonl",
                [
                    {"prompt": p, "policy": n, "positive": q}
                    for p, n, q in zip(prompts, negatives, positives, strict=True)
                ],
            )
            # ==== 2. the discriminator: positives (1) vs π_k samples (0) ======================
            init = disc if (m.disc_init == "continue" and disc) else cfg.model.path
            pick = lambda xs, flag: [x for x, h in zip(xs, held, strict=True) if h == flag]  # noqa: E731
            train_rows = steps.classifier_rows(
                pick(prompts, False), pick(positives, False), pick(negatives, False)
            )
            test_rows = steps.classifier_rows(
                pick(prompts, True), pick(positives, True), pick(negatives, True)
            )
            disc_path = steps.train_classifier(
                init, tokenizer, train_rows, out / "discriminator", m.rm_training, seed + k
            )
            from irlalign.modeling.reward import load_reward_model

            acc = steps.classifier_accuracy(load_reward_model(disc_path), *test_rows)
            # ==== 3. RL against the discriminator's reward, KL to π_SFT ======================
            rl = _rl(cfg, m, policy, disc_path, out / "policy")
            summary = {
                "round": k,
                "policy_in": str(policy),
                "discriminator": str(disc_path),
                "heldout_accuracy": acc,
                "policy_out": rl["final_checkpoint"],
                "synthetic": rl.get("synthetic"),
            }
            done.write_text(json.dumps(summary, indent=2, default=str))
        rounds.append(summary)
        run.log_metrics(
            {"round": k, "disc/heldout_accuracy": summary["heldout_accuracy"], **_gold(summary)}
        )
        policy, disc = summary["policy_out"], summary["discriminator"]
    results = {
        "label": "extension (not in the paper)",
        "reward": m.reward,
        "positives": m.positives,
        "rounds": rounds,
        "final_checkpoint": policy,
    }
    run.write_eval(results)
    return results


def _gold(summary: dict) -> dict[str, float]:
    syn = summary.get("synthetic") or {}
    return {f"eval/{k}": syn[k] for k in ("gold_return", "normalised_score", "kl_ref") if k in syn}


def _sample(model, tokenizer, m: AdversarialConfig, prompts, seed: int) -> list[str]:
    import torch

    torch.manual_seed(seed)
    rollouts = HFSampler(model, tokenizer, m.sampling).sample(prompts, m.samples_per_prompt)
    return steps.responses(rollouts, m.turn_markers)


def _rl(cfg, m: AdversarialConfig, policy: str, disc: Path, out: Path) -> dict[str, Any]:
    from irlalign.training import resolve, train

    spec = f"gail:{disc}" if m.reward == "gail" else str(disc)
    method = {"reward_mode": "terminal", "reward_norm": "initial", "kl_coef": 0.05, **m.rl_method}
    method["reward_model"] = spec
    method.setdefault("sampling", dataclasses.asdict(m.sampling))
    raw = {
        "model": {
            **dataclasses.asdict(cfg.model),
            "path": policy,
            "reference_path": cfg.model.path,
        },  # the KL reference stays π_SFT
        "data": dataclasses.asdict(cfg.data),
        "method": method,
        "training": {
            "seed": cfg.training.get("seed", 42),
            "use_cpu": cfg.training.get("use_cpu", False),
            "max_steps": 50,
            **m.rl_training,
            "output_dir": str(out),
        },
        "eval": dataclasses.asdict(cfg.eval),
    }
    return train(resolve(m.rl, raw))
