"""`irlalign train frft` on the tiny model: two rounds, the three arms, both embedders, both refit
modes; every round folder complete, the refit sees only its selected pairs (or the pool with them
up-weighted), the aligned validation pairs come from the held-out set the pooled RM never saw,
accuracies against the truth and the premise metric are logged, resume at a round boundary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from irlalign.methods import resolve, train

PARTS = (
    "scored.jsonl",
    "scored_val.jsonl",
    "selection.json",
    "rm_metrics.json",
    "rm_train.jsonl",
    "round.json",
)


def _raw(task: Path, out: Path, embedder: str, trainer: str = "ppo") -> dict:
    steps = {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-3}
    return {
        "model": {"path": str(task / "pi_init")},
        "data": {"train": str(task / "preferences"), "max_rows": 40, "max_length": 32},
        "method": {
            "rounds": 2,
            "k": 8,
            "k_val": 4,
            "n_random_val": 10,
            "embedder": embedder,
            "vanilla_training": steps,
            "rm_training": steps,
            "policy_trainer": trainer,
            "rl_method": {"prompts_per_step": 2, **({"k": 2} if trainer == "rloo" else {})},
            "rl_training": {"max_steps": 2, "save_steps": 10},
            "rl_prompts_per_round": 4,
            "turn_markers": [],
            "sampling": {"max_new_tokens": 8},
        },
        "training": {"output_dir": str(out), "seed": 0, "use_cpu": True},
        "eval": {"synthetic_task": str(task), "samples": 1},
    }


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _triples(rows) -> list[tuple[str, str, str]]:
    return sorted((r["prompt"], r["chosen"], r["rejected"]) for r in rows)


@pytest.mark.parametrize(
    ("embedder", "trainer", "refit"),
    [("backbone", "ppo", "subset"), ("minilm", "rloo", "upweighted")],
)
def test_frft_rounds_and_baselines(embedder, trainer, refit, smoke_task_dir, tmp_path):
    if embedder == "minilm":
        from irlalign.frft.embedders import minilm_folder

        if minilm_folder() is None:
            pytest.skip("all-MiniLM-L6-v2 package not installed (make real)")
    out = tmp_path / "frft"
    raw = _raw(smoke_task_dir, out, embedder, trainer)
    raw["method"].update(refit=refit, upweight=3)
    results = train(resolve("frft", raw))
    assert set(results["arms"]) == {"frft", "vanilla", "random"}
    assert (out / "manifest.json").exists() and (out / "vanilla_rm" / "checkpoints").exists()
    assert results["truth"] == "data" and 0 <= results["vanilla_rm_accuracy_random_true"] <= 1
    from datasets import load_from_disk

    prefs = load_from_disk(str(smoke_task_dir / "preferences"))["train"]
    vanilla_rows = _triples(_lines(out / "vanilla_rm" / "pool.jsonl"))
    assert len(vanilla_rows) == 30  # 40 rows, the last 10 held out
    for arm in ("frft", "random"):
        for k in range(2):
            folder = out / arm / f"round_{k:02d}"
            for part in PARTS:
                assert (folder / part).exists(), (arm, k, part)
            assert (folder / "rm" / "checkpoints" / "final" / "config.json").exists()
            assert (folder / "policy" / "checkpoints" / "final" / "config.json").exists()
            assert (folder / "gold.json").exists()
            scored = _lines(folder / "scored.jsonl")
            train_idx = [r["pool_idx"] for r in scored if r["split"] == "train"]
            sel = json.loads((folder / "selection.json").read_text())
            assert len(train_idx) == 8 and sel["requested"] == 12 and sel["returned"] == 12
            # The aligned validation pairs: k_val records of the held-out tail (pool rows 30-39),
            # none of which trained the pooled RM.
            val_idx = [r["pool_idx"] for r in _lines(folder / "scored_val.jsonl") if r["selected"]]
            val_rows = _triples(prefs[30 + i] for i in val_idx)
            assert len(val_idx) == 4 and not set(val_rows) & set(vanilla_rows)
            refit_rows = _triples(_lines(folder / "rm_train.jsonl"))
            selected = _triples(prefs[i] for i in train_idx)
            if refit == "subset":  # the refit's data: exactly S_train
                assert refit_rows == selected
            else:  # the pool once, each selected pair three times in all
                assert refit_rows == sorted(vanilla_rows + 2 * selected)
            metrics = json.loads((folder / "rm_metrics.json").read_text())
            for key in ("aligned", "random", "aligned_true", "random_true"):
                assert 0 <= metrics[f"refit_accuracy_{key}"] <= 1, key
            assert metrics["refit_steps"] == 2 and metrics["refit"] == refit
    rounds = results["arms"]["frft"]
    assert rounds[1]["policy_in"] == rounds[0]["policy_out"]
    assert (out / "vanilla" / "round_01" / "round.json").exists()
    # The premise metric: every arm and round, in its summary and in metrics.jsonl.
    lines = _lines(out / "metrics.jsonl")
    assert [(x["arm"], x["step"]) for x in lines] == [
        (arm, k) for arm in ("frft", "vanilla", "random") for k in range(2)
    ]
    for line, arm in zip(lines, ["frft"] * 2 + ["vanilla"] * 2 + ["random"] * 2, strict=True):
        premise = results["arms"][arm][line["step"]]["premise"]
        assert line["premise/vanilla_rm"] == premise["vanilla_rm"] and premise["pairs"] > 0
        assert ("premise/refit_rm" in line) == (arm != "vanilla")


def test_frft_resumes_at_a_round_boundary(smoke_task_dir, tmp_path):
    out = tmp_path / "frft"
    raw = _raw(smoke_task_dir, out, "backbone", "rloo")
    raw["method"]["arms"] = ["frft"]
    first = train(resolve("frft", raw))
    stamp = (out / "frft" / "round_00" / "rm_train.jsonl").stat().st_mtime_ns
    vanilla = out / "vanilla_rm" / "checkpoints" / "final" / "model.safetensors"
    vanilla_stamp = vanilla.stat().st_mtime_ns
    (out / "frft" / "round_01" / "round.json").unlink()
    second = train(resolve("frft", raw))
    assert (out / "frft" / "round_00" / "rm_train.jsonl").stat().st_mtime_ns == stamp
    assert vanilla.stat().st_mtime_ns == vanilla_stamp  # the finished vanilla RM is reused
    dump = lambda x: json.dumps(x, sort_keys=True, default=str)  # noqa: E731 (NaN-safe)
    assert dump(second["arms"]["frft"][0]) == dump(first["arms"]["frft"][0])
    assert (out / "frft" / "round_01" / "round.json").exists()
    raw["method"]["k"] = 6  # finished rounds of another configuration are never reused
    with pytest.raises(ValueError, match="different configuration"):
        train(resolve("frft", raw))
