"""`irlalign train afd` and `irlalign train adversarial` end to end on the tiny model (a few
steps per phase): every phase's output exists, curves share one pool, rounds resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from irlalign.methods import resolve, train

STEPS = {"max_steps": 3, "per_device_train_batch_size": 8, "learning_rate": 1e-2}


def _raw(task: Path, out: Path, method: dict, **data):
    return {
        "model": {"path": str(task / "pi_init")},
        "data": {"train": str(task / "demos"), "max_length": 32, "max_rows": 40, **data},
        "method": {"turn_markers": [], "sampling": {"max_new_tokens": 12}, **method},
        "training": {"output_dir": str(out), "seed": 0, "use_cpu": True},
        "eval": {"synthetic_task": str(task), "samples": 1},
    }


def test_afd_pipeline_variants_share_one_best_of_n_pool(smoke_task_dir, tmp_path):
    method = {
        "variants": ["init_sft", "init_demo", "bt_pairwise"],
        "preferences": str(smoke_task_dir / "preferences"),
        "sft_training": STEPS,
        "rm_training": STEPS,
        "heldout_fraction": 0.25,
        "bon_n": [1, 2, 4],
        "bon_prompts": 6,
        "rl": "rloo",
        "rl_method": {"k": 2, "prompts_per_step": 2},
        "rl_training": {"max_steps": 2, "save_steps": 5},
    }
    results = train(resolve("afd", _raw(smoke_task_dir, tmp_path / "afd", method)))
    run = tmp_path / "afd"
    assert (run / "sft" / "checkpoints" / "final" / "config.json").exists()
    rows = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and set(rows[0]) == {"prompt", "init", "sft", "demo"}
    rms = results["reward_models"]
    assert set(rms) == {"init_sft", "init_demo", "bt_pairwise"}
    assert rms["init_sft"]["heldout_pairs"] == 10 and 0 <= rms["init_sft"]["heldout_accuracy"] <= 1
    curves = results["best_of_n"]["curves"]
    assert set(curves) == {
        "init_sft",
        "init_demo",
        "bt_pairwise",
        "log_ratio_sum",
        "log_ratio_mean",
    }
    at_one = {c[0]["gold_return"] for c in curves.values()}
    assert len(at_one) == 1  # N = 1 is the pool mean whatever the ranker
    assert [r["n"] for r in curves["init_sft"]] == [1, 2, 4]
    assert curves["init_sft"][1]["kl_bound"] == pytest.approx(0.1931, abs=1e-4)
    assert results["rl"]["steps"] == 2 and "synthetic" in results["rl"]
    assert json.loads((run / "eval.json").read_text())["variants"] == list(rms)


def test_adversarial_rounds_write_round_folders_and_resume(smoke_task_dir, tmp_path):
    method = {
        "rounds": 2,
        "reward": "gail",
        "rm_training": STEPS,
        "heldout_fraction": 0.25,
        "min_disc_accuracy": 0.0,  # every round trains, whatever the discriminator learned
        "rl_method": {"k": 2, "prompts_per_step": 2},
        "rl_training": {"max_steps": 2, "save_steps": 5},
    }
    raw = _raw(smoke_task_dir, tmp_path / "adv", method)
    first = train(resolve("adversarial", raw))
    assert not any(r["rl_skipped"] for r in first["rounds"])
    run = tmp_path / "adv"
    for k in range(2):
        folder = run / f"round_{k}"
        for part in ("samples.jsonl", "discriminator/config.json", "round.json"):
            assert (folder / part).exists(), part
        assert (folder / "policy" / "checkpoints" / "final" / "config.json").exists()
    assert first["rounds"][1]["policy_in"] == first["rounds"][0]["policy_out"]
    # Resume at a round boundary: round 0 is kept as it was, round 1 is redone.
    stamp = (run / "round_0" / "discriminator" / "model.safetensors").stat().st_mtime_ns
    (run / "round_1" / "round.json").unlink()
    second = train(resolve("adversarial", raw))
    assert (run / "round_0" / "discriminator" / "model.safetensors").stat().st_mtime_ns == stamp
    dump = lambda x: json.dumps(x, sort_keys=True, default=str)  # noqa: E731 (NaN-safe)
    assert dump(second["rounds"][0]) == dump(first["rounds"][0])
    assert (run / "round_1" / "round.json").exists()
    assert [r["round"] for r in _lines(run / "metrics.jsonl")] == [0, 1]  # each round once


def test_afd_resumes_at_phase_boundaries(smoke_task_dir, tmp_path, capsys):
    """Interrupted after SFT, AfD redoes the later phases only; rerun once finished, it
    reuses every phase. The results are those of the uninterrupted run (CPU, fixed seeds).
    (The RL phase is a phase run like SFT, reused the same way; left out to keep this fast.)"""
    method = {
        "variants": ["init_sft"],
        "sft_training": {**STEPS, "max_steps": 2},
        "rm_training": {**STEPS, "max_steps": 2},
        "heldout_fraction": 0.25,
        "bon_n": [1, 2],
        "bon_prompts": 4,
    }
    raw = _raw(smoke_task_dir, tmp_path / "afd", method, max_rows=16)
    first = train(resolve("afd", raw))
    run = tmp_path / "afd"
    sft = run / "sft" / "checkpoints" / "final" / "model.safetensors"
    stamp = sft.stat().st_mtime_ns
    for name in ("samples.jsonl", "eval.json"):
        (run / name).unlink()
    shutil.rmtree(run / "rm_init_sft")
    raw["training"]["resume_from_checkpoint"] = True
    capsys.readouterr()
    second = train(resolve("afd", raw))
    assert sft.stat().st_mtime_ns == stamp  # SFT was not trained again
    assert f"{run / 'sft'}: finished before" in capsys.readouterr().out
    dump = lambda x: json.dumps(x, sort_keys=True, default=str)  # noqa: E731 (NaN-safe)
    assert dump(second) == dump(first)
    later = [run / "samples.jsonl", run / "rm_init_sft" / "model.safetensors", sft]
    stamps = [p.stat().st_mtime_ns for p in later]
    assert dump(train(resolve("afd", raw))) == dump(first)
    assert [p.stat().st_mtime_ns for p in later] == stamps


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_adversarial_round_skips_rl_while_the_discriminator_is_near_chance(
    smoke_task_dir, tmp_path
):
    """A discriminator below `min_disc_accuracy` on held-out prompts gets no RL step: the
    round keeps its policy, and no policy run is written."""
    method = {
        "rounds": 1,
        "rm_training": {**STEPS, "max_steps": 1},
        "heldout_fraction": 0.25,
        "min_disc_accuracy": 1.0,
        "rl_method": {"k": 2, "prompts_per_step": 2},
        "rl_training": {"max_steps": 2, "save_steps": 5},
    }
    res = train(resolve("adversarial", _raw(smoke_task_dir, tmp_path / "adv", method)))
    (round_0,) = res["rounds"]
    assert round_0["rl_skipped"] == (round_0["heldout_accuracy"] < 1.0)
    if round_0["rl_skipped"]:
        assert round_0["policy_out"] == round_0["policy_in"] == res["final_checkpoint"]
        assert not (tmp_path / "adv" / "round_0" / "policy").exists()
    with pytest.raises(ValueError, match="heldout_fraction"):
        resolve("adversarial", _raw(smoke_task_dir, tmp_path / "x", {"heldout_fraction": 0}))
