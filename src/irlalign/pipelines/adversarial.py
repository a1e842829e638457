"""Iterative adversarial AfD, GAIL / AIRL style (an extension of AfD, not evaluated in the
paper). Start from π_0 = the configured model (π_SFT); for each round k:

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
from irlalign.pipelines import parts
from irlalign.runs import write_jsonl


@dataclass
class AdversarialConfig:
    rounds: int = 3
    reward: str = "airl"  # "airl": the logit ℓ; "gail": softplus(ℓ)
    positives: str = "demos"  # or "sft_samples": π_SFT samples, homogeneous with the policy
    disc_init: str = "continue"  # "continue" from the previous round, or "scratch"
    rm_training: dict[str, Any] = field(default_factory=dict)  # TrainingArguments keywords
    rl: str = "rloo"  # or "ppo"
    # Each round's RL phase: `method` and `training` over the defaults every pipeline's RL phase
    # shares (`irlalign.pipelines.parts.rl_phase`).
    rl_method: dict[str, Any] = field(default_factory=dict)
    rl_training: dict[str, Any] = field(default_factory=dict)  # default max_steps 50 per round
    samples_per_prompt: int = 1
    heldout_fraction: float = 0.05
    # A round's RL step runs only when the discriminator's held-out accuracy reaches this: a
    # near-chance discriminator's logit is noise, and standardising it to unit variance would
    # make the policy chase that noise. The round then keeps its policy unchanged.
    min_disc_accuracy: float = 0.6
    turn_markers: tuple[str, ...] = ("\n\nHuman",)
    sampling: Any = field(default_factory=lambda: SamplingConfig(top_p=0.95, max_new_tokens=128))

    def __post_init__(self) -> None:
        self.sampling = SamplingConfig.coerce(self.sampling)
        self.turn_markers = tuple(self.turn_markers)
        if self.rounds < 1 or self.samples_per_prompt < 1:
            raise ValueError("rounds and samples_per_prompt must be >= 1")
        if self.reward not in ("airl", "gail") or self.rl not in ("rloo", "ppo"):
            raise ValueError("reward is airl|gail and rl is rloo|ppo")
        if self.positives not in ("demos", "sft_samples"):
            raise ValueError("positives is demos|sft_samples")
        if self.disc_init not in ("continue", "scratch"):
            raise ValueError("disc_init is continue|scratch")
        if not 0 <= self.min_disc_accuracy <= 1:
            raise ValueError("min_disc_accuracy must be in [0, 1]")
        if self.min_disc_accuracy > 0 and self.heldout_fraction <= 0:
            raise ValueError("min_disc_accuracy needs held-out prompts (heldout_fraction > 0)")


def train_adversarial(cfg, run_child) -> dict[str, Any]:
    """Run the rounds; returns (and writes to `eval.json`) the per-round summaries.
    ``run_child(method_name, cfg, **phase)`` runs each round's RL phase."""
    from irlalign.modeling.load import load_model

    adv: AdversarialConfig = cfg.method_config
    run_dir = cfg.run_dir
    run, seed, tokenizer, demos = parts.open_run(cfg)
    # Every round's line is logged below, finished rounds' from their round.json: a rerun
    # rewrites the file rather than adding the finished rounds' lines a second time.
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    prompts = [p for p in demos.prompts for _ in range(adv.samples_per_prompt)]
    positives = [parts.truncate_turn(c, adv.turn_markers) for c in demos.completions]
    positives = [c for c in positives for _ in range(adv.samples_per_prompt)]
    if adv.positives == "sft_samples":
        positives = _sample(load_model(cfg.model), tokenizer, adv, demos.prompts, seed)
    held = parts.heldout_split(len(prompts), adv.heldout_fraction, seed)
    policy, disc, rounds = cfg.model.path, None, []
    data = (prompts, positives, held, demos.prompts, tokenizer, seed)
    for k in range(adv.rounds):
        done = run_dir / f"round_{k}" / "round.json"
        if done.exists():  # resume: this round finished before
            summary = json.loads(done.read_text())
        else:
            summary = _round(cfg, run_child, k, policy, disc, data)
            done.write_text(json.dumps(summary, indent=2, default=str))
        rounds.append(summary)
        run.log_metrics(
            {"round": k, "disc/heldout_accuracy": summary["heldout_accuracy"], **_gold(summary)}
        )
        policy, disc = summary["policy_out"], summary["discriminator"]
    results = {
        "label": "extension (not in the paper)",
        "reward": adv.reward,
        "positives": adv.positives,
        "rounds": rounds,
        "final_checkpoint": policy,
    }
    run.write_eval(results)
    return _publish(cfg, results, run)


def _publish(cfg, results: dict[str, Any], run) -> dict[str, Any]:
    """With `training.push_to_hub`: the policy of the last round whose RL phase ran."""
    from irlalign.cards import phase_folder, publish_pipeline

    trained = [r for r in results["rounds"] if not r.get("rl_skipped")]
    if cfg.training.get("push_to_hub") and not trained:
        raise ValueError(
            "training.push_to_hub: every round skipped its RL phase (min_disc_accuracy); "
            "there is no trained policy to push"
        )
    if not trained:
        return results
    k, policy = trained[-1]["round"], results["final_checkpoint"]
    which = (
        f"The final policy of the adversarial IRL rounds: round {k}'s RL policy "
        f"(`{phase_folder(policy, cfg.run_dir)}`), trained against that round's "
        f"{cfg.method_config.reward} discriminator. The discriminators are not pushed."
    )
    return publish_pipeline(cfg, results, policy, which, run.write_eval, trained[-1]["synthetic"])


def _round(cfg, run_child, k: int, policy: str, disc: str | None, data) -> dict[str, Any]:
    """One round: samples of π_k, the discriminator against them, RL when it discriminates."""
    from irlalign.modeling.load import load_model
    from irlalign.modeling.reward import load_reward_model

    adv: AdversarialConfig = cfg.method_config
    prompts, positives, held, unique_prompts, tokenizer, seed = data
    out = cfg.run_dir / f"round_{k}"
    # ==== 1. samples of π_k ==============================================================
    pol = load_model(dataclasses.replace(cfg.model, path=policy, lora=None))
    negatives = _sample(pol, tokenizer, adv, unique_prompts, seed + 1000 * (k + 1))
    write_jsonl(
        out / "samples.jsonl",
        [
            {"prompt": p, "policy": n, "positive": q}
            for p, n, q in zip(prompts, negatives, positives, strict=True)
        ],
    )
    # ==== 2. the discriminator: positives (1) vs π_k samples (0) ==========================
    init = disc if (adv.disc_init == "continue" and disc) else cfg.model.path
    pick = lambda xs, flag: [x for x, h in zip(xs, held, strict=True) if h == flag]  # noqa: E731
    train_rows = parts.classifier_rows(
        pick(prompts, False), pick(positives, False), pick(negatives, False)
    )
    test_rows = parts.classifier_rows(
        pick(prompts, True), pick(positives, True), pick(negatives, True)
    )
    disc_path = parts.train_classifier(
        init, tokenizer, train_rows, out / "discriminator", adv.rm_training, seed + k
    )
    acc = parts.classifier_accuracy(load_reward_model(disc_path), *test_rows)
    if adv.min_disc_accuracy > 0 and not test_rows[0]:
        raise ValueError(
            "min_disc_accuracy needs held-out prompts: heldout_fraction × prompts rounds to 0"
        )
    summary = {
        "round": k,
        "policy_in": str(policy),
        "discriminator": str(disc_path),
        "heldout_accuracy": acc,
        "rl_skipped": adv.min_disc_accuracy > 0 and not acc >= adv.min_disc_accuracy,
        "policy_out": str(policy),
        "synthetic": None,
    }
    # ==== 3. RL against the discriminator's reward, KL to π_SFT =========================
    if not summary["rl_skipped"]:
        rl = _rl(cfg, adv, run_child, policy, disc_path, f"round_{k}/policy")
        summary.update(policy_out=rl["final_checkpoint"], synthetic=rl.get("synthetic"))
    return summary


def _gold(summary: dict) -> dict[str, float]:
    syn = summary.get("synthetic") or {}
    return {f"eval/{k}": syn[k] for k in ("gold_return", "normalised_score", "kl_ref") if k in syn}


def _sample(model, tokenizer, adv: AdversarialConfig, prompts, seed: int) -> list[str]:
    import torch

    torch.manual_seed(seed)
    rollouts = HFSampler(model, tokenizer, adv.sampling).sample(prompts, adv.samples_per_prompt)
    return parts.responses(rollouts, adv.turn_markers)


def _rl(cfg, adv: AdversarialConfig, run_child, policy: str, disc: Path, folder: str):
    """RL from π_k against the discriminator's reward; the KL reference stays π_SFT."""
    spec = f"gail:{disc}" if adv.reward == "gail" else str(disc)
    method, training = parts.rl_phase(cfg, adv.sampling, adv.rl_method, adv.rl_training, 50)
    method["reward_model"] = spec
    return run_child(
        adv.rl,
        cfg,
        folder=folder,
        model=policy,
        reference=cfg.model.path,
        data={"train": cfg.data.train, "split": cfg.data.split, "max_rows": cfg.data.max_rows},
        method=method,
        training=training,
        evaluate=True,
    )
