"""FRFT, Filtered Reward Fine-Tuning (Krishna & Sahoo, arXiv 2412.10529).

The inverse-alignment loop: a pooled-data ("vanilla") Bradley–Terry RM, then per round: freeze
the policy → sample one response per pool prompt → embed the responses (never the prompt) →
cosine scores s_w, s_l against the stored chosen / rejected responses → select a subset (a rule of
`irlalign.frft.selection`) → refit the RM with Bradley–Terry on it → RL (PPO by default, RLOO
selectable) against the refit RM with the KL reference fixed at π_SFT.

The same command runs the paper's baselines: `vanilla` (RL against the fixed pooled RM) and
`random` (the loop with a random subset of the same size). Each arm writes
`<arm>/round_<kk>/`; a finished round is skipped on a rerun (resume at a round boundary).

Measurement: a held-out set H (the eval split, or the pool's tail) never trains the pooled RM
nor any refit. V_rand is all of H; the aligned validation pairs are the k_val records of H that
the configured rule selects for the arm's frozen policy. Accuracies are reported against the
labels and, when the data or the synthetic task gives it, against the true ordering; on
synthetic tasks every round also logs the premise metric (`irlalign.frft.measure`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from irlalign.config import RunConfig
from irlalign.data.formats import DataWarning
from irlalign.frft.measure import evaluate_rm
from irlalign.frft.pool import load_pool
from irlalign.frft.refit import REFIT_MODES, refit_rows, refit_training
from irlalign.generation.sampling import SamplingConfig
from irlalign.pipelines.frft_run import (
    FRFTRun,
    gold_reward,
    policy_pairs,
    rm_metrics,
    round_samples,
    scored_records,
    upweight_of,
    write_scored,
)
from irlalign.pipelines.parts import rl_phase
from irlalign.runs import RunFolder, write_jsonl

ARMS = ("frft", "vanilla", "random")


@dataclass
class FRFTConfig:
    rounds: int = 2  # α
    arms: tuple[str, ...] = ARMS  # FRFT and the two baselines, in one command
    rule: str = "top_mean"  # selection rule of the FRFT arm (`random` is the baseline's)
    k: float = 2000  # training pairs: a count, or a fraction (< 1) of the scored records
    k_val: float = 200  # aligned validation pairs (from the held-out set): count or fraction of k
    tau: float = 0.8  # threshold rules only
    pool_subsample: float | None = None  # score a seeded subsample per round (count/fraction)
    embedder: str = "minilm"  # "minilm" (local all-MiniLM-L6-v2), "backbone", or a local folder
    rm_init: str = "vanilla"  # vanilla | previous | sft (fresh head on π_SFT's backbone)
    vanilla_rm: str | None = None  # a given pooled-data RM folder; otherwise trained here
    vanilla_training: dict[str, Any] = field(default_factory=dict)  # TrainingArguments keywords
    rm_training: dict[str, Any] = field(default_factory=dict)  # the refit's TrainingArguments
    # max_steps unset (and no num_train_epochs): ceil(refit_passes · refit rows / batch size)
    refit_passes: float = 1.0
    refit: str = "subset"  # subset (the selected pairs) | upweighted (whole pool, selection ×w)
    upweight: int | None = None  # w of `upweighted`; None: round((N − K) / K)
    n_random_val: int = 1000  # held-out set H = V_rand (the eval split when given)
    policy_trainer: str = "ppo"  # or "rloo"
    # Each round's RL phase: `method` and `training` over the defaults every pipeline's RL phase
    # shares (`irlalign.pipelines.parts.rl_phase`).
    rl_method: dict[str, Any] = field(default_factory=dict)
    rl_training: dict[str, Any] = field(default_factory=dict)  # default max_steps 50 per round
    rl_prompts_per_round: int = 2000  # Q_k = pool prompts [k·M, (k+1)·M)
    turn_markers: tuple[str, ...] = ("\n\nHuman:",)
    sampling: Any = field(
        default_factory=lambda: SamplingConfig(temperature=0.9, top_k=200, max_new_tokens=100)
    )

    def __post_init__(self) -> None:
        from irlalign.frft.selection import get_selector

        self.sampling = SamplingConfig.coerce(self.sampling)
        self.arms, self.turn_markers = tuple(self.arms), tuple(self.turn_markers)
        get_selector(self.rule)  # raises on an unknown rule
        if self.rounds < 1 or not self.arms or set(self.arms) - set(ARMS):
            raise ValueError(f"rounds >= 1 and arms from {', '.join(ARMS)} are required")
        if self.rm_init not in ("vanilla", "previous", "sft"):
            raise ValueError("rm_init is vanilla | previous | sft")
        if self.policy_trainer not in ("ppo", "rloo"):
            raise ValueError("policy_trainer is ppo | rloo")
        if self.k <= 0 or self.k_val < 0 or self.rl_prompts_per_round < 1:
            raise ValueError("k > 0, k_val >= 0 and rl_prompts_per_round >= 1 are required")
        if self.n_random_val < 1:
            raise ValueError("method.n_random_val (the held-out set) must be >= 1")
        if isinstance(self.k_val, int) and self.k_val > self.n_random_val:
            raise ValueError(
                f"method.k_val={self.k_val}: the aligned validation pairs are selected from the "
                f"held-out set of n_random_val={self.n_random_val} pairs; lower k_val"
            )
        if self.refit not in REFIT_MODES:
            raise ValueError(f"method.refit is {' | '.join(REFIT_MODES)}, got {self.refit!r}")
        bad_weight = self.upweight is not None and (
            isinstance(self.upweight, bool) or not isinstance(self.upweight, int)
        )
        if bad_weight or (self.upweight is not None and self.upweight < 1):
            raise ValueError(f"method.upweight must be an int >= 1 or null, got {self.upweight!r}")
        if not self.refit_passes > 0:
            raise ValueError(f"method.refit_passes must be > 0, got {self.refit_passes}")


def train_frft(cfg: RunConfig, run_child) -> dict[str, Any]:
    """Run every configured arm for `rounds` rounds; writes `eval.json` with the summaries.
    ``run_child(method_name, cfg, **phase)`` runs the RM fits and the RL phases."""
    from irlalign.modeling.load import load_tokenizer

    frft: FRFTConfig = cfg.method_config
    run_dir = cfg.run_dir
    run = RunFolder(run_dir)
    run.check_rounds(cfg.to_dict(), "*/round_*/round.json")
    pool = load_pool(cfg.data.train, cfg.data.split, cfg.data.max_rows)
    # ==== H: held-out pairs, identical for every arm and round, never trained on =============
    if cfg.data.eval:
        held = load_pool(cfg.data.eval, cfg.data.eval_split)
        held = held.head(min(frft.n_random_val, len(held)))
    else:  # a slice of the pool, excluded from scoring, selection and training
        if frft.n_random_val >= len(pool):
            raise ValueError(
                f"method.n_random_val={frft.n_random_val} holds out the whole pool of "
                f"{len(pool)} pairs; lower it or give data.eval"
            )
        held = pool.subset(range(len(pool) - frft.n_random_val, len(pool)))
        pool = pool.head(-frft.n_random_val)
    tokenizer = load_tokenizer(cfg.model.path, cfg.model.trust_remote_code)
    gold = gold_reward(cfg, tokenizer)
    truth = "data" if pool.has_truth and held.has_truth else None
    if gold is not None and truth is None:
        pool, held, truth = pool.with_truth(gold.score), held.with_truth(gold.score), "gold reward"
    run.write_config(cfg.to_dict())  # the data passed validation
    run.write_env(cfg.seed)
    ctx = FRFTRun(cfg, frft, run_child, pool, held, vanilla="", eos=tokenizer.eos_token, gold=gold)
    if set(frft.arms) - {"vanilla"}:
        _counts(ctx, len(scored_records(ctx, 0)))  # fail before any training
    # ==== the vanilla (pooled-data) RM: default init, baseline (a), fallback embedder ========
    ctx.vanilla = frft.vanilla_rm or _vanilla_rm(ctx)
    vanilla = evaluate_rm(ctx.vanilla, {"random": (held, range(len(held)))})
    manifest = {
        "vanilla_rm": str(ctx.vanilla),
        "vanilla_rm_accuracy_random": vanilla["accuracy_random"],
        "vanilla_rm_accuracy_random_true": vanilla["accuracy_random_true"],
        "random_val": {"source": "eval split" if cfg.data.eval else "pool tail", "n": len(held)},
        "truth": truth,  # where the true ordering comes from (None: labels only)
        "embedder": ctx.embedder_name(),
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    results = {**manifest, "arms": {arm: run_arm(ctx, arm) for arm in frft.arms}}
    run.write_eval(results)
    return _publish(cfg, results, run)


def _publish(cfg: RunConfig, results: dict[str, Any], run: RunFolder) -> dict[str, Any]:
    """With `training.push_to_hub`: the last round's policy of the FRFT arm (of the first
    configured arm when FRFT itself is not run)."""
    from irlalign.cards import phase_folder, publish_pipeline

    arms = results["arms"]
    arm = "frft" if "frft" in arms else next(iter(arms))
    last = arms[arm][-1]
    policy = last["policy_out"]
    which = (
        f"The final policy of the FRFT pipeline: the policy of the `{arm}` arm after round "
        f"{last['round']} (`{phase_folder(policy, cfg.run_dir)}`), trained by RL against "
        f"that round's reward model (`{phase_folder(last['rm'], cfg.run_dir)}`). The other "
        "arms' policies and the reward models are not pushed."
    )
    return publish_pipeline(cfg, results, policy, which, run.write_eval, last.get("gold"))


def _vanilla_rm(ctx: FRFTRun) -> str:
    folder = ctx.cfg.run_dir / "vanilla_rm"
    data = write_jsonl(folder / "pool.jsonl", ctx.pool.rows(range(len(ctx.pool))))
    model = ctx.cfg.model.path
    training = ctx.frft.vanilla_training
    return ctx.phase("reward", folder, model, data, training=training)["final_checkpoint"]


def run_arm(ctx: FRFTRun, arm: str) -> list[dict[str, Any]]:
    """The rounds of one arm; `frft` uses the configured rule, `random` a random subset of the
    same size, `vanilla` skips selection and refit (RL against the fixed pooled RM)."""
    policy, prev_rm, rounds = ctx.cfg.model.path, ctx.vanilla, []
    for k in range(ctx.frft.rounds):
        out = ctx.cfg.run_dir / arm / f"round_{k:02d}"
        done = out / "round.json"
        if done.exists():
            summary = json.loads(done.read_text())
        else:
            summary = {"arm": arm, "round": k, "policy_in": policy}
            out.mkdir(parents=True, exist_ok=True)
            rm_path = ctx.vanilla
            scored = scored_records(ctx, k) if arm != "vanilla" else np.arange(0)
            samples, held_samples = round_samples(ctx, arm, k, policy, scored)
            if arm != "vanilla":
                rm_path = _filter_and_refit(
                    ctx, arm, k, (scored, samples), prev_rm, out, summary, held_samples
                )
            elif ctx.gold is not None:
                pairs = policy_pairs(ctx, held_samples)
                premise = evaluate_rm(ctx.vanilla, {}, pairs)["premise"]
                summary["premise"] = {"vanilla_rm": premise, "pairs": pairs.n_pairs}
            # ==== 7-8. RL against the (refit) RM; KL reference fixed at π_SFT ================
            rl = _rl(ctx, k, policy, rm_path, out)
            summary.update(rm=str(rm_path), policy_out=rl["final_checkpoint"])
            if rl.get("synthetic"):
                keys = ("gold_return", "normalised_score", "kl_ref")
                gold = {x: rl["synthetic"][x] for x in keys}
                (out / "gold.json").write_text(json.dumps(gold, indent=2))
                summary["gold"] = gold
            done.write_text(json.dumps(summary, indent=2, default=str))
        ctx.log_round(summary)
        rounds.append(summary)
        policy, prev_rm = summary["policy_out"], summary["rm"]
    return rounds


def _counts(ctx: FRFTRun, n_scored: int) -> tuple[int, int]:
    """(K, k_val) as counts; k_val must fit in the held-out set it is selected from."""
    from irlalign.frft.selection import resolve_count

    n_train = resolve_count(ctx.frft.k, n_scored)
    n_val = resolve_count(ctx.frft.k_val, n_train)
    if n_val > len(ctx.held):
        raise ValueError(
            f"method.k_val: {n_val} aligned validation pairs asked for, but the held-out set "
            f"they are selected from has {len(ctx.held)} (method.n_random_val, data.eval)"
        )
    return n_train, n_val


def _filter_and_refit(
    ctx: FRFTRun, arm: str, k: int, scored_samples, prev_rm: str, out: Path, summary, held_samples
) -> str:
    from irlalign.frft.selection import cosine_scores, get_selector

    frft, pool, held = ctx.frft, ctx.pool, ctx.held
    seed = ctx.cfg.seed + 1000 * k
    # ==== 1-2. π_k frozen; one response per scored pool prompt (`round_samples`) =============
    scored, samples = scored_samples
    # ==== 3-4. embed the responses (never the prompt); cosine scores =========================
    s_w, s_l = cosine_scores(
        ctx.embed(samples),
        ctx.stored("pool", "chosen")[scored],
        ctx.stored("pool", "rejected")[scored],
    )
    # ==== 5. select K training records (the arm's rule) and k_val aligned validation records
    # of H (the configured rule, for both arms: pairs aligned with this arm's policy) =========
    n_train, n_val = _counts(ctx, len(scored))
    rule = frft.rule if arm == "frft" else "random"
    sel = get_selector(rule)(s_w, s_l, n_train, tau=frft.tau, seed=seed)
    train_idx = scored[sel.indices]
    h_samples = [s[0] for s in held_samples]
    h_w, h_l = cosine_scores(
        ctx.embed(h_samples), ctx.stored("held", "chosen"), ctx.stored("held", "rejected")
    )
    val_sel = get_selector(frft.rule)(h_w, h_l, n_val, tau=frft.tau, seed=seed)
    val_idx = val_sel.indices
    write_scored(out / "scored.jsonl", scored, s_w, s_l, samples, train_idx, "train")
    write_scored(
        out / "scored_val.jsonl", np.arange(len(held)), h_w, h_l, h_samples, val_idx, "val"
    )
    selection = {
        "rule": rule,
        "tau": frft.tau,
        "k": n_train,
        "k_val": n_val,
        "requested": n_train + n_val,
        "returned": len(train_idx) + len(val_idx),
        "shortfall": sel.shortfall + val_sel.shortfall,
        "seed": seed,
        "val_rule": frft.rule,
        "val_source": "held-out set (never trained on)",
        "val_pool": len(held),
    }
    (out / "selection.json").write_text(json.dumps(selection, indent=2))
    # ==== 6. refit the RM with Bradley–Terry: the selection, or the pool with it up-weighted
    init = {"vanilla": ctx.vanilla, "previous": prev_rm, "sft": ctx.cfg.model.path}[frft.rm_init]
    rows = refit_rows(len(pool), train_idx, frft.refit, frft.upweight)
    data = write_jsonl(out / "rm_train.jsonl", pool.rows(rows))
    training, steps = refit_training(frft.rm_training, len(rows), frft.refit_passes)
    with warnings.catch_warnings():
        if frft.refit == "upweighted":  # the repeated rows are the weighting, not a data fault
            warnings.filterwarnings(
                "ignore", message=".*repeat an earlier row", category=DataWarning
            )
        rm = ctx.phase("reward", out / "rm", init, data, training=training)["final_checkpoint"]
    metrics = {
        "init": frft.rm_init,
        "init_path": str(init),
        "train_pairs": len(train_idx),
        "refit": frft.refit,
        "refit_rows": len(rows),
        "upweight": upweight_of(rows, train_idx) if frft.refit == "upweighted" else None,
        "refit_steps": steps,
    }
    premise = rm_metrics(ctx, metrics, init, rm, val_idx, held_samples)
    (out / "rm_metrics.json").write_text(json.dumps(metrics, indent=2))
    summary.update(selection=selection, rm_metrics=metrics)
    if premise is not None:
        summary["premise"] = premise
    return rm


def _rl(ctx: FRFTRun, k: int, policy: str, rm_path: str, out: Path) -> dict[str, Any]:
    frft = ctx.frft
    lo = k * frft.rl_prompts_per_round
    idx = [i % len(ctx.pool) for i in range(lo, lo + frft.rl_prompts_per_round)]
    data = write_jsonl(out / "rl_prompts.jsonl", ctx.pool.rows(idx))
    method, training = rl_phase(ctx.cfg, frft.sampling, frft.rl_method, frft.rl_training, 50)
    method["reward_model"] = str(rm_path)
    return ctx.phase(
        frft.policy_trainer, out / "policy", policy, data, method=method, training=training
    )
