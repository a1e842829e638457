"""FRFT, Filtered Reward Fine-Tuning (Krishna & Sahoo, arXiv 2412.10529; specs/frft.md §4.3).

The inverse-alignment loop, composed from parts: a pooled-data ("vanilla") Bradley–Terry RM,
then per round: freeze the policy → sample one response per pool prompt → embed the responses
(never the prompt) → cosine scores s_w, s_l against the stored chosen / rejected responses →
select a subset (a rule of `irlalign.frft.selection`) → refit the RM with Bradley–Terry on it →
RL (PPO by default, RLOO selectable) against the refit RM with the KL reference fixed at π_SFT.

The same command runs the baselines (spec §7): `vanilla` (RL against the fixed pooled RM) and
`random` (the loop with a random subset of the same size). Each arm writes
`<arm>/round_<kk>/` (spec §8); a finished round is skipped on rerun (resume at a boundary).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from irlalign.generation.sampling import SamplingConfig
from irlalign.trainers import online

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
    rl_method: dict[str, Any] = field(default_factory=dict)  # PPOConfig / RLOOConfig fields
    rl_training: dict[str, Any] = field(default_factory=dict)  # LoopArgs fields, per round
    rl_prompts_per_round: int = 2000  # Q_k = pool prompts [k·M, (k+1)·M)
    turn_markers: tuple[str, ...] = ("\n\nHuman:",)
    sampling: Any = field(
        default_factory=lambda: SamplingConfig(temperature=0.9, top_k=200, max_new_tokens=100)
    )

    def __post_init__(self) -> None:
        from irlalign.frft.selection import get_selector

        self.sampling = online.sampling_config(self.sampling)
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
class Pool:
    prompts: list[str]
    chosen: list[str]
    rejected: list[str]

    def rows(self, idx) -> list[dict[str, str]]:
        return [
            {"prompt": self.prompts[i], "chosen": self.chosen[i], "rejected": self.rejected[i]}
            for i in idx
        ]


def load_pool(spec: str, split: str, max_rows: int | None = None) -> Pool:
    from irlalign.data.formats import check_dataset
    from irlalign.data.loading import load_rows

    rows = load_rows(spec, split)
    if max_rows is not None:
        rows = rows.select(range(min(max_rows, len(rows))))
    fmt = check_dataset(rows, f"{spec} [{split}]").fmt
    if fmt.kind != "preference" or fmt.conversational:
        raise ValueError(f"{spec} [{split}]: FRFT needs prompt/chosen/rejected text pairs")
    return Pool(list(rows["prompt"]), list(rows["chosen"]), list(rows["rejected"]))


def rm_accuracy(rm_path: str | Path, pool: Pool, idx) -> float:
    """Pairwise accuracy r(chosen) > r(rejected) on the records ``idx``."""
    from irlalign.modeling.reward import load_reward_model

    idx = list(idx)
    if not idx:
        return float("nan")
    rm = load_reward_model(rm_path)
    prompts = [pool.prompts[i] for i in idx]
    chosen = rm.score(prompts, [pool.chosen[i] for i in idx])
    rejected = rm.score(prompts, [pool.rejected[i] for i in idx])
    return float(np.mean(chosen > rejected))


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sub_run(cfg, method: str, out: Path, model_path: str, data: str, method_raw, training):
    """`irlalign train <method>` for one phase, in its own folder."""
    from irlalign.training import resolve, train

    model = {**dataclasses.asdict(cfg.model), "path": model_path}
    if method in ("ppo", "rloo"):
        model["reference_path"] = cfg.model.path  # the KL reference stays π_SFT every round
    raw = {
        "model": model,
        "data": {
            **dataclasses.asdict(cfg.data),
            **{"train": data, "split": "train", "eval": None, "max_rows": None},
        },
        "method": method_raw,
        "training": {
            "seed": cfg.training.get("seed", 42),
            "use_cpu": cfg.training.get("use_cpu", False),
            **training,
            "output_dir": str(out),
        },
        "eval": dataclasses.asdict(cfg.eval) if method in ("ppo", "rloo") else {},
    }
    return train(resolve(method, raw))


def train_frft(cfg) -> dict[str, Any]:
    """Run every configured arm for `rounds` rounds; writes `eval.json` with the summaries."""
    from irlalign.runs import RunFolder
    from irlalign.trainers import frft_round

    m: FRFTConfig = cfg.method_config
    run_dir, seed = cfg.run_dir, int(cfg.training.get("seed", 42))
    run = RunFolder(run_dir)
    run.write_round_config(cfg.to_dict(), "*/round_*/round.json")
    run.write_env(seed)
    pool = load_pool(cfg.data.train, cfg.data.split, cfg.data.max_rows)
    # ==== V_rand: fixed random held-out pairs, identical for every arm and round =============
    if cfg.data.eval:
        held = load_pool(cfg.data.eval, cfg.data.eval_split)
        v_idx = np.arange(min(m.n_random_val, len(held.prompts)))
    else:  # a slice of the pool, excluded from scoring, selection and training
        held, v_idx = pool, np.arange(len(pool.prompts) - m.n_random_val, len(pool.prompts))
        pool = Pool(*(x[: -m.n_random_val] for x in (pool.prompts, pool.chosen, pool.rejected)))
    # ==== the vanilla (pooled-data) RM: default init, baseline (a), fallback embedder ========
    vanilla = m.vanilla_rm
    if vanilla is None:
        data = str(
            write_rows(run_dir / "vanilla_rm" / "pool.jsonl", pool.rows(range(len(pool.prompts))))
        )
        out = sub_run(
            cfg, "reward", run_dir / "vanilla_rm", cfg.model.path, data, {}, m.vanilla_training
        )
        vanilla = out["final_checkpoint"]
    manifest = {
        "vanilla_rm": str(vanilla),
        "vanilla_rm_accuracy_random": rm_accuracy(vanilla, held, v_idx),
        "random_val": {"source": "eval split" if cfg.data.eval else "pool tail", "n": len(v_idx)},
    }
    ctx = frft_round.Context(cfg, m, pool, held, v_idx, str(vanilla), seed)
    manifest["embedder"] = ctx.embedder_name()
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    arms = {arm: frft_round.run_arm(ctx, arm) for arm in m.arms}
    results = {**manifest, "arms": arms}
    run.write_eval(results)
    return results
