"""One FRFT arm, round by round (specs/frft.md §4.3 steps 1–8 and the §8 artifacts)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from irlalign.generation.sampling import HFSampler
from irlalign.trainers.afd_steps import truncate_turn
from irlalign.trainers.frft import Pool, rm_accuracy, sub_run, write_rows


@dataclass
class Context:
    cfg: Any
    m: Any  # FRFTConfig
    pool: Pool
    held: Pool  # where V_rand lives
    v_idx: np.ndarray
    vanilla: str
    seed: int
    _embedder: Any = None
    _cache: dict[str, np.ndarray] = field(default_factory=dict)

    def embedder(self):
        """Loaded once: a fixed embedder keeps scores comparable across rounds and arms."""
        if self._embedder is None:
            from irlalign.frft.embedders import load_embedder, minilm_folder
            from irlalign.modeling.load import ModelOptions, load_model, load_tokenizer

            rm = tok = None
            fallback = self.m.embedder == "minilm" and minilm_folder() is None
            if self.m.embedder == "backbone" or fallback:  # the vanilla RM's frozen backbone
                rm = load_model(ModelOptions(path=self.vanilla), kind="reward")
                tok = load_tokenizer(self.vanilla)
            self._embedder = load_embedder(self.m.embedder, rm, tok)
        return self._embedder

    def embedder_name(self) -> str:
        return str(getattr(self.embedder(), "name", type(self.embedder()).__name__))

    def stored(self, side: str) -> np.ndarray:
        """Embeddings of the stored chosen / rejected responses (response text only), cached."""
        if side not in self._cache:
            texts = self.pool.chosen if side == "chosen" else self.pool.rejected
            self._cache[side] = np.asarray(self.embedder().embed(texts), dtype=np.float32)
        return self._cache[side]


def run_arm(ctx: Context, arm: str) -> list[dict[str, Any]]:
    """The rounds of one arm; `frft` uses the configured rule, `random` a random subset of the
    same size, `vanilla` skips selection and refit (RL against the fixed pooled RM)."""
    m, policy, prev_rm, rounds = ctx.m, ctx.cfg.model.path, ctx.vanilla, []
    for k in range(m.rounds):
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
                gold = {
                    x: rl["synthetic"][x] for x in ("gold_return", "normalised_score", "kl_ref")
                }
                (out / "gold.json").write_text(json.dumps(gold, indent=2))
                summary["gold"] = gold
            done.write_text(json.dumps(summary, indent=2, default=str))
        rounds.append(summary)
        policy, prev_rm = summary["policy_out"], summary["rm"]
    return rounds


def _filter_and_refit(
    ctx: Context, arm: str, k: int, policy: str, prev_rm: str, out: Path, summary
):
    from irlalign.frft.selection import cosine_scores, get_selector, resolve_count, split_train_val

    m, pool = ctx.m, ctx.pool
    seed = ctx.seed + 1000 * k
    # ==== 1-2. freeze π_k; one response per scored pool prompt ================================
    scored = np.arange(len(pool.prompts))
    if m.pool_subsample is not None:
        n_sub = resolve_count(m.pool_subsample, len(scored))
        scored = np.sort(np.random.default_rng(seed).choice(scored, n_sub, replace=False))
    samples = _sample(ctx, policy, [pool.prompts[i] for i in scored], seed)
    # ==== 3-4. embed the responses (never the prompt); cosine scores =========================
    emb = np.asarray(ctx.embedder().embed(samples), dtype=np.float32)
    s_w, s_l = cosine_scores(emb, ctx.stored("chosen")[scored], ctx.stored("rejected")[scored])
    # ==== 5. select K + k_val unique records; seeded train/val split =========================
    n_train = resolve_count(m.k, len(scored))
    n_val = resolve_count(m.k_val, n_train)
    rule = m.rule if arm == "frft" else "random"
    sel = get_selector(rule)(s_w, s_l, n_train + n_val, tau=m.tau, seed=seed)
    val_n = min(n_val, len(sel.indices) // 2)
    train_pos, val_pos = split_train_val(sel.indices, val_n, seed)
    train_idx, val_idx = scored[train_pos], scored[val_pos]
    split = {int(i): "train" for i in train_idx} | {int(i): "val" for i in val_idx}
    write_rows(
        out / "scored.jsonl",
        [
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
        ],
    )
    selection = {
        "rule": rule,
        "tau": m.tau,
        "k": n_train,
        "k_val": n_val,
        "requested": n_train + n_val,
        "returned": len(sel.indices),
        "shortfall": sel.shortfall,
        "seed": seed,
    }
    (out / "selection.json").write_text(json.dumps(selection, indent=2))
    # ==== 6. refit the RM with Bradley–Terry on the selected training pairs only ==============
    init = {"vanilla": ctx.vanilla, "previous": prev_rm, "sft": ctx.cfg.model.path}[m.rm_init]
    data = write_rows(out / "rm_train.jsonl", pool.rows(train_idx))
    rm = sub_run(ctx.cfg, "reward", out / "rm", init, str(data), {}, m.rm_training)[
        "final_checkpoint"
    ]
    metrics = {"init": m.rm_init, "init_path": str(init), "train_pairs": len(train_idx)}
    for name, path in (("init", init if m.rm_init != "sft" else None), ("refit", rm)):
        if path is not None:
            metrics[f"{name}_accuracy_aligned"] = rm_accuracy(path, pool, val_idx)
            metrics[f"{name}_accuracy_random"] = rm_accuracy(path, ctx.held, ctx.v_idx)
    (out / "rm_metrics.json").write_text(json.dumps(metrics, indent=2))
    summary.update(selection=selection, rm_metrics=metrics)
    return rm


def _sample(ctx: Context, policy: str, prompts: list[str], seed: int) -> list[str]:
    import dataclasses

    import torch

    from irlalign.modeling.load import load_model, load_tokenizer

    model = load_model(dataclasses.replace(ctx.cfg.model, path=policy, lora=None)).eval()
    tok = load_tokenizer(policy)
    torch.manual_seed(seed)
    rollouts = HFSampler(model, tok, ctx.m.sampling).sample(prompts, 1)
    # An empty response still needs a text for the embedder.
    return [truncate_turn(r, ctx.m.turn_markers) or " " for r in rollouts.responses]


def _rl(ctx: Context, k: int, policy: str, rm_path: str, out: Path) -> dict[str, Any]:
    m = ctx.m
    lo = k * m.rl_prompts_per_round
    idx = [i % len(ctx.pool.prompts) for i in range(lo, lo + m.rl_prompts_per_round)]
    data = write_rows(out / "rl_prompts.jsonl", ctx.pool.rows(idx))
    method = {"reward_mode": "terminal", **m.rl_method, "reward_model": str(rm_path)}
    training = {"max_steps": 50, **m.rl_training}
    return sub_run(ctx.cfg, m.policy_trainer, out / "policy", policy, str(data), method, training)
