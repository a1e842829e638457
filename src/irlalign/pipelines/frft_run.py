"""The shared state and the measuring parts of an FRFT run (`irlalign.pipelines.frft`): the
embedder and the stored responses' embeddings, one round's policy samples, the reward models'
accuracies and premise metric, and what a round writes to `scored*.jsonl` and `metrics.jsonl`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from irlalign.config import RunConfig
from irlalign.frft.measure import PolicyPairs, evaluate_rm
from irlalign.frft.pool import PreferencePool, embedding_text
from irlalign.generation.sampling import HFSampler
from irlalign.pipelines.parts import truncate_turn
from irlalign.runs import write_atomic, write_jsonl


@dataclass
class FRFTRun:
    """What every arm and round of one FRFT run shares."""

    cfg: RunConfig
    frft: Any  # the method's `FRFTConfig` (irlalign.pipelines.frft)
    run_child: Any
    pool: PreferencePool  # P: what the pooled RM trains on and the refits select from
    held: PreferencePool  # H: never trained on; V_rand and the aligned validation pairs
    vanilla: str
    eos: str | None = None  # the policy tokenizer's EOS text (see `embedding_text`)
    gold: Any = None  # the synthetic task's true reward (a `GoldReward`), or None
    lines: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl, one per round
    _embedder: Any = None
    _cache: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

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

    def embed(self, texts: list[str]) -> np.ndarray:
        """Stored responses and policy samples alike, through `embedding_text`."""
        markers = self.frft.turn_markers
        norm = [embedding_text(truncate_turn(t, markers), self.eos) for t in texts]
        return np.asarray(self.embedder().embed(norm), dtype=np.float32)

    def stored(self, which: str, side: str) -> np.ndarray:
        """Embeddings of the stored chosen / rejected responses of the pool ("pool") or the
        held-out set ("held") (response text only), cached."""
        if (which, side) not in self._cache:
            pool = self.pool if which == "pool" else self.held
            self._cache[which, side] = self.embed(
                pool.chosen if side == "chosen" else pool.rejected
            )
        return self._cache[which, side]

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

    def log_round(self, summary: dict[str, Any]) -> None:
        """One `metrics.jsonl` line per finished round, the file rewritten whole so that a
        round redone on a rerun is never logged twice."""
        self.lines.append(metrics_line(summary))
        text = "".join(json.dumps(x) + "\n" for x in self.lines)
        write_atomic(self.cfg.run_dir / "metrics.jsonl", text)


def gold_reward(cfg: RunConfig, tokenizer):
    """The synthetic task's r* when `eval.synthetic_task` is set (truth and premise metric)."""
    if not cfg.eval.synthetic_task:
        return None
    from irlalign.synthetic.build import load_task
    from irlalign.synthetic.gold import GoldReward

    return GoldReward(load_task(cfg.eval.synthetic_task), tokenizer)


def scored_records(ctx: FRFTRun, k: int) -> np.ndarray:
    """The pool records scored in round k: all, or a seeded subsample (`pool_subsample`)."""
    from irlalign.frft.selection import resolve_count

    scored = np.arange(len(ctx.pool))
    if ctx.frft.pool_subsample is not None:
        n_sub = resolve_count(ctx.frft.pool_subsample, len(scored))
        rng = np.random.default_rng(ctx.cfg.seed + 1000 * k)
        scored = np.sort(rng.choice(scored, n_sub, replace=False))
    return scored


def round_samples(ctx: FRFTRun, arm: str, k: int, policy: str, scored: np.ndarray):
    """The frozen policy's samples of round k: one per scored pool prompt (the selection), and
    on H's prompts one (the aligned validation pairs; `frft` and `random` arms) or, on synthetic
    tasks, two (also the premise pairs). H is sampled first, with its own seed, so that arms
    with the same policy (every arm in round 0) get the same H samples. Returns (pool samples,
    H samples as a list of 1 or 2 texts per H prompt, or None)."""
    n_held = 2 if ctx.gold is not None else int(arm != "vanilla")
    seed = ctx.cfg.seed + 1000 * k
    groups = [
        (list(ctx.held.prompts) * n_held, seed + 1),
        ([ctx.pool.prompts[i] for i in scored], seed),
    ]
    held_texts, pool_texts = sample_groups(ctx, policy, groups)
    h = len(ctx.held)
    held = [[held_texts[j * h + i] for j in range(n_held)] for i in range(h)] if n_held else None
    return pool_texts, held


def policy_pairs(ctx: FRFTRun, samples: list[list[str]]) -> PolicyPairs:
    """The premise pairs: H's prompts with their two samples, each scored by the gold reward."""
    responses = [(a, b) for a, b in samples]
    flat = [r for two in responses for r in two]
    prompts = [p for p in ctx.held.prompts for _ in range(2)]
    gold = np.asarray(ctx.gold.score(prompts, flat), dtype=np.float64).reshape(-1, 2)
    return PolicyPairs(list(ctx.held.prompts), responses, gold)


def upweight_of(rows: np.ndarray, selected: np.ndarray) -> int | None:
    """How many times a selected pair appears in the refit's rows."""
    return int(np.sum(rows == selected[0])) if len(selected) else None


def rm_metrics(ctx: FRFTRun, metrics: dict, init: str, rm: str, val_idx, held_samples):
    """Accuracies of the refit's start and result on the aligned validation pairs and on V_rand
    (labels and truth) into ``metrics``; returns the premise metric (None off synthetic tasks)."""
    pairs = policy_pairs(ctx, held_samples) if ctx.gold is not None else None
    sets = {"aligned": (ctx.held, val_idx), "random": (ctx.held, range(len(ctx.held)))}
    paths = {"vanilla": ctx.vanilla, "refit": rm}
    if ctx.frft.rm_init == "previous" and init != ctx.vanilla:
        paths["init"] = init
    scores = {name: evaluate_rm(path, sets, pairs) for name, path in paths.items()}
    if ctx.frft.rm_init != "sft":  # a fresh head has no "before" worth reporting
        scores.setdefault("init", scores["vanilla"])
        for key, value in scores["init"].items():
            if key != "premise":
                metrics[f"init_{key}"] = value
    for key, value in scores["refit"].items():
        if key != "premise":
            metrics[f"refit_{key}"] = value
    if pairs is None:
        return None
    return {
        "vanilla_rm": scores["vanilla"]["premise"],
        "refit_rm": scores["refit"]["premise"],
        "pairs": pairs.n_pairs,
    }


def write_scored(path: Path, scored, s_w, s_l, samples, picked, split: str) -> None:
    """Every scored record of one pool, its scores, sample and whether it was picked."""
    chosen = {int(i) for i in picked}
    rows = [
        {
            "pool_idx": int(i),
            "s_w": float(a),
            "s_l": float(b),
            "rank_score": float((a + b) / 2),
            "selected": int(i) in chosen,
            "split": split if int(i) in chosen else "none",
            "sample": t,
        }
        for i, a, b, t in zip(scored, s_w, s_l, samples, strict=True)
    ]
    write_jsonl(path, rows)


def sample_groups(
    ctx: FRFTRun, policy: str, groups: list[tuple[list[str], int]]
) -> list[list[str]]:
    """One response per prompt of each (prompts, seed) group, cut at the turn markers; the
    policy is loaded once (and not at all when every group is empty)."""
    import torch

    from irlalign.modeling.load import load_model, load_tokenizer

    if not any(prompts for prompts, _ in groups):
        return [[] for _ in groups]
    model = load_model(dataclasses.replace(ctx.cfg.model, path=policy, lora=None)).eval()
    sampler = HFSampler(model, load_tokenizer(policy), ctx.frft.sampling)
    out = []
    for prompts, seed in groups:
        torch.manual_seed(seed)
        responses = sampler.sample(prompts, 1).responses if prompts else []
        out.append([truncate_turn(r, ctx.frft.turn_markers) for r in responses])
    return out


def metrics_line(summary: dict[str, Any]) -> dict[str, Any]:
    """A round summary's numbers as one `metrics.jsonl` line (step = the round)."""
    line: dict[str, Any] = {"step": summary["round"], "arm": summary["arm"]}
    for key, value in (summary.get("premise") or {}).items():
        line[f"premise/{key}"] = value
    for key, value in (summary.get("rm_metrics") or {}).items():
        if "accuracy" in key:
            line[f"rm/{key}"] = value
    if summary.get("gold"):
        line["eval/normalised_score"] = summary["gold"]["normalised_score"]
    return line
