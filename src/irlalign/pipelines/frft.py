"""FRFT, Filtered Reward Fine-Tuning (Krishna & Sahoo, arXiv 2412.10529).

The inverse-alignment loop: a pooled-data ("vanilla") Bradley–Terry RM, then per round: freeze
the policy → sample one response per pool prompt → embed the responses (never the prompt) →
cosine scores s_w, s_l against the stored chosen / rejected responses → select a subset (a rule of
`irlalign.frft.selection`) → refit the RM with Bradley–Terry on it → RL (PPO by default, RLOO
selectable) against the refit RM with the KL reference fixed at π_SFT.

The same command runs the paper's baselines: `vanilla` (RL against the fixed pooled RM) and
`random` (the loop with a random subset of the same size). Each arm writes
`<arm>/round_<kk>/`; a finished round is skipped on a rerun (resume at a round boundary).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from irlalign.config import RunConfig
from irlalign.frft.pool import PreferencePool, load_pool, rm_accuracy
from irlalign.generation.sampling import HFSampler, SamplingConfig
from irlalign.pipelines.parts import rl_phase, truncate_turn
from irlalign.runs import RunFolder, write_jsonl

ARMS = ("frft", "vanilla", "random")


@dataclass
class FRFTConfig:
    rounds: int = 2  # α
    arms: tuple[str, ...] = ARMS  # FRFT and the two baselines, in one command
    rule: str = "top_mean"  # selection rule of the FRFT arm (`random` is the baseline's)
    k: float = 2000  # training pairs: a count, or a fraction (< 1) of the scored records
    k_val: float = 200  # aligned validation pairs: a count, or a fraction (< 1) of k
    tau: float = 0.8  # threshold rules only
    pool_subsample: float | None = None  # score a seeded subsample per round (count/fraction)
    embedder: str = "minilm"  # "minilm" (local all-MiniLM-L6-v2), "backbone", or a local folder
    rm_init: str = "vanilla"  # vanilla | previous | sft (fresh head on π_SFT's backbone)
    vanilla_rm: str | None = None  # a given pooled-data RM folder; otherwise trained here
    vanilla_training: dict[str, Any] = field(default_factory=dict)  # TrainingArguments keywords
    rm_training: dict[str, Any] = field(default_factory=dict)  # the refit's TrainingArguments
    n_random_val: int = 1000  # V_rand: random held-out pairs (the eval split when given)
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


@dataclass
class FRFTRun:
    """What every arm and round of one FRFT run shares."""

    cfg: RunConfig
    frft: FRFTConfig
    run_child: Any
    pool: PreferencePool
    held: PreferencePool  # where V_rand lives
    v_idx: np.ndarray
    vanilla: str
    _embedder: Any = None
    _cache: dict[str, np.ndarray] = field(default_factory=dict)

    def embedder(self):
        """Loaded once: a fixed embedder keeps scores comparable across rounds and arms."""
        if self._embedder is None:
            from irlalign.frft.embedders import load_embedder, minilm_folder
            from irlalign.modeling.load import ModelOptions, load_model, load_tokenizer

            rm = tok = None
            fallback = self.frft.embedder == "minilm" and minilm_folder() is None
            if self.frft.embedder == "backbone" or fallback:  # the vanilla RM's frozen backbone
                rm = load_model(ModelOptions(path=self.vanilla), kind="reward")
                tok = load_tokenizer(self.vanilla)
            self._embedder = load_embedder(self.frft.embedder, rm, tok)
        return self._embedder

    def embedder_name(self) -> str:
        return str(getattr(self.embedder(), "name", type(self.embedder()).__name__))

    def stored(self, side: str) -> np.ndarray:
        """Embeddings of the stored chosen / rejected responses (response text only), cached."""
        if side not in self._cache:
            texts = self.pool.chosen if side == "chosen" else self.pool.rejected
            self._cache[side] = np.asarray(self.embedder().embed(texts), dtype=np.float32)
        return self._cache[side]

    def phase(self, method_name: str, folder: Path, model: str, data: Path, **kw) -> dict:
        """One sub-run on a jsonl file this run wrote; RL phases keep π_SFT as KL reference
        and are evaluated like the parent."""
        rl = method_name in ("ppo", "rloo")
        if rl:
            kw.update(reference=self.cfg.model.path, evaluate=True)
        rel = folder.relative_to(self.cfg.run_dir)
        return self.run_child(
            method_name, self.cfg, folder=rel, model=model, data={"train": str(data)}, **kw
        )


def train_frft(cfg: RunConfig, run_child) -> dict[str, Any]:
    """Run every configured arm for `rounds` rounds; writes `eval.json` with the summaries.
    ``run_child(method_name, cfg, **phase)`` runs the RM fits and the RL phases."""
    frft: FRFTConfig = cfg.method_config
    run_dir = cfg.run_dir
    run = RunFolder(run_dir)
    run.check_rounds(cfg.to_dict(), "*/round_*/round.json")
    pool = load_pool(cfg.data.train, cfg.data.split, cfg.data.max_rows)
    # ==== V_rand: fixed random held-out pairs, identical for every arm and round =============
    if cfg.data.eval:
        held = load_pool(cfg.data.eval, cfg.data.eval_split)
        v_idx = np.arange(min(frft.n_random_val, len(held)))
    else:  # a slice of the pool, excluded from scoring, selection and training
        held, v_idx = pool, np.arange(len(pool) - frft.n_random_val, len(pool))
        pool = pool.head(-frft.n_random_val)
    run.write_config(cfg.to_dict())  # the data passed validation
    run.write_env(cfg.seed)
    ctx = FRFTRun(cfg, frft, run_child, pool, held, v_idx, vanilla="")
    # ==== the vanilla (pooled-data) RM: default init, baseline (a), fallback embedder ========
    ctx.vanilla = frft.vanilla_rm or _vanilla_rm(ctx)
    manifest = {
        "vanilla_rm": str(ctx.vanilla),
        "vanilla_rm_accuracy_random": rm_accuracy(ctx.vanilla, held, v_idx),
        "random_val": {"source": "eval split" if cfg.data.eval else "pool tail", "n": len(v_idx)},
        "embedder": ctx.embedder_name(),
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    results = {**manifest, "arms": {arm: run_arm(ctx, arm) for arm in frft.arms}}
    run.write_eval(results)
    return results


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
            rm_path = ctx.vanilla
            if arm != "vanilla":
                rm_path = _filter_and_refit(ctx, arm, k, policy, prev_rm, out, summary)
            # ==== 7-8. RL against the (refit) RM; KL reference fixed at π_SFT ================
            rl = _rl(ctx, k, policy, rm_path, out)
            summary.update(rm=str(rm_path), policy_out=rl["final_checkpoint"])
            if rl.get("synthetic"):
                keys = ("gold_return", "normalised_score", "kl_ref")
                gold = {x: rl["synthetic"][x] for x in keys}
                (out / "gold.json").write_text(json.dumps(gold, indent=2))
                summary["gold"] = gold
            done.write_text(json.dumps(summary, indent=2, default=str))
        rounds.append(summary)
        policy, prev_rm = summary["policy_out"], summary["rm"]
    return rounds


def _filter_and_refit(ctx: FRFTRun, arm: str, k: int, policy: str, prev_rm: str, out, summary):
    from irlalign.frft.selection import cosine_scores, get_selector, resolve_count

    frft, pool = ctx.frft, ctx.pool
    seed = ctx.cfg.seed + 1000 * k
    # ==== 1-2. freeze π_k; one response per scored pool prompt ================================
    scored = np.arange(len(pool))
    if frft.pool_subsample is not None:
        n_sub = resolve_count(frft.pool_subsample, len(scored))
        scored = np.sort(np.random.default_rng(seed).choice(scored, n_sub, replace=False))
    samples = _sample(ctx, policy, [pool.prompts[i] for i in scored], seed)
    # ==== 3-4. embed the responses (never the prompt); cosine scores =========================
    emb = np.asarray(ctx.embedder().embed(samples), dtype=np.float32)
    s_w, s_l = cosine_scores(emb, ctx.stored("chosen")[scored], ctx.stored("rejected")[scored])
    # ==== 5. select K + k_val unique records; seeded train/val split =========================
    n_train = resolve_count(frft.k, len(scored))
    n_val = resolve_count(frft.k_val, n_train)
    rule = frft.rule if arm == "frft" else "random"
    sel = get_selector(rule)(s_w, s_l, n_train + n_val, tau=frft.tau, seed=seed)
    train_idx, val_idx = _split(scored, sel.indices, n_val, seed)
    _write_scored(out, scored, s_w, s_l, samples, train_idx, val_idx)
    selection = {
        "rule": rule,
        "tau": frft.tau,
        "k": n_train,
        "k_val": n_val,
        "requested": n_train + n_val,
        "returned": len(sel.indices),
        "shortfall": sel.shortfall,
        "seed": seed,
    }
    (out / "selection.json").write_text(json.dumps(selection, indent=2))
    # ==== 6. refit the RM with Bradley–Terry on the selected training pairs only ==============
    init = {"vanilla": ctx.vanilla, "previous": prev_rm, "sft": ctx.cfg.model.path}[frft.rm_init]
    data = write_jsonl(out / "rm_train.jsonl", pool.rows(train_idx))
    rm = ctx.phase("reward", out / "rm", init, data, training=frft.rm_training)
    rm = rm["final_checkpoint"]
    metrics = {"init": frft.rm_init, "init_path": str(init), "train_pairs": len(train_idx)}
    for name, path in (("init", init if frft.rm_init != "sft" else None), ("refit", rm)):
        if path is not None:
            metrics[f"{name}_accuracy_aligned"] = rm_accuracy(path, pool, val_idx)
            metrics[f"{name}_accuracy_random"] = rm_accuracy(path, ctx.held, ctx.v_idx)
    (out / "rm_metrics.json").write_text(json.dumps(metrics, indent=2))
    summary.update(selection=selection, rm_metrics=metrics)
    return rm


def _split(scored: np.ndarray, selected, n_val: int, seed: int):
    """Pool indices of the refit's training and aligned-validation pairs."""
    from irlalign.frft.selection import split_train_val

    val_n = min(n_val, len(selected) // 2)
    train_pos, val_pos = split_train_val(selected, val_n, seed)
    return scored[train_pos], scored[val_pos]


def _write_scored(out: Path, scored, s_w, s_l, samples, train_idx, val_idx) -> None:
    """`scored.jsonl`: every scored record, its scores, sample and where it went."""
    split = {int(i): "train" for i in train_idx} | {int(i): "val" for i in val_idx}
    rows = [
        {
            "pool_idx": int(i),
            "s_w": float(a),
            "s_l": float(b),
            "rank_score": float((a + b) / 2),
            "selected": int(i) in split,
            "split": split.get(int(i), "none"),
            "sample": t,
        }
        for i, a, b, t in zip(scored, s_w, s_l, samples, strict=True)
    ]
    write_jsonl(out / "scored.jsonl", rows)


def _sample(ctx: FRFTRun, policy: str, prompts: list[str], seed: int) -> list[str]:
    import torch

    from irlalign.modeling.load import load_model, load_tokenizer

    model = load_model(dataclasses.replace(ctx.cfg.model, path=policy, lora=None)).eval()
    tok = load_tokenizer(policy)
    torch.manual_seed(seed)
    rollouts = HFSampler(model, tok, ctx.frft.sampling).sample(prompts, 1)
    # An empty response still needs a text for the embedder.
    return [truncate_turn(r, ctx.frft.turn_markers) or " " for r in rollouts.responses]


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
