"""`irlalign train frft` on the tiny model: two rounds, the three arms, both embedders; every
round folder complete, the refit sees only its selected pairs, resume at a round boundary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from irlalign.methods import resolve, train

PARTS = ("scored.jsonl", "selection.json", "rm_metrics.json", "rm_train.jsonl", "round.json")


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


@pytest.mark.parametrize(("embedder", "trainer"), [("backbone", "ppo"), ("minilm", "rloo")])
def test_frft_rounds_and_baselines(embedder, trainer, smoke_task_dir, tmp_path):
    if embedder == "minilm":
        from irlalign.frft.embedders import minilm_folder

        if minilm_folder() is None:
            pytest.skip("all-MiniLM-L6-v2 package not installed (make real)")
    out = tmp_path / "frft"
    results = train(resolve("frft", _raw(smoke_task_dir, out, embedder, trainer)))
    assert set(results["arms"]) == {"frft", "vanilla", "random"}
    assert (out / "manifest.json").exists() and (out / "vanilla_rm" / "checkpoints").exists()
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
            assert len(train_idx) == 8 and sel["requested"] == 12
            refit_rows = _lines(folder / "rm_train.jsonl")  # the refit's data: exactly S_train
            assert len(refit_rows) == len(train_idx)
            from datasets import load_from_disk

            prefs = load_from_disk(str(smoke_task_dir / "preferences"))["train"]
            pairs = lambda rows: sorted((r["prompt"], r["chosen"], r["rejected"]) for r in rows)  # noqa: E731
            assert pairs(refit_rows) == pairs(prefs[i] for i in train_idx)
    rounds = results["arms"]["frft"]
    assert rounds[1]["policy_in"] == rounds[0]["policy_out"]
    assert (out / "vanilla" / "round_01" / "round.json").exists()


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
