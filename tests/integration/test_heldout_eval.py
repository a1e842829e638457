"""A held-out file (`data.eval`) is evaluated with each method's own loss during training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from conftest import DATA, raw_config
from irlalign.cli.main import main
from irlalign.methods import resolve, train

PAIRWISE = {"eval_accuracy", "eval_rewards/margins"}
EVAL_KEYS = {
    "sft": {"eval_loss/mle"},
    "iqlearn": {"eval_loss/mle", "eval_loss/td"},
    "reward": PAIRWISE,
    "dpo": PAIRWISE,
    "ava": PAIRWISE | {"eval_loss/cer"},
    "preference_transformer": PAIRWISE,
}


def _logs(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _with_eval(task_dir, out, method, **training) -> dict:
    cfg = raw_config(task_dir, out, method, **training)
    cfg["data"]["eval"] = str(task_dir / DATA[method])  # its `test` split, never trained on
    return cfg


@pytest.mark.parametrize("method", sorted(DATA))
def test_heldout_file_is_evaluated_with_the_method_loss(method, smoke_task_dir, tmp_path):
    out = tmp_path / method
    # No eval_strategy: the default evaluates every eval_steps and after the last step.
    cfg = _with_eval(smoke_task_dir, out, method, max_steps=2, eval_steps=5, save_steps=5)
    results = train(resolve(method, cfg))
    assert (Path(results["final_checkpoint"]) / "config.json").exists()
    logs = _logs(out)
    evals = [r for r in logs if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2]
    assert {"eval_loss"} | EVAL_KEYS[method] <= set(evals[0])
    assert all(math.isfinite(v) for k, v in evals[0].items() if k.startswith("eval_loss"))
    # Training logs keep their own metrics: none of the evaluation's leaks into them.
    steps = [r for r in logs if "loss" in r]
    assert len(steps) == 2 and not any(k.startswith("eval_") for r in steps for k in r)
    if PAIRWISE <= EVAL_KEYS[method]:
        assert 0 <= evals[0]["eval_accuracy"] <= 1


def test_eval_strategy_no_from_the_command_line(smoke_task_dir, tmp_path):
    """`--training.eval_strategy no` (YAML false) trains without evaluating."""
    out = tmp_path / "no_eval"
    cfg_file = tmp_path / "sft.yaml"
    cfg_file.write_text(yaml.safe_dump(_with_eval(smoke_task_dir, out, "sft", max_steps=1)))
    argv = ["train", "sft", "--config", str(cfg_file), "--training.eval_strategy", "no"]
    assert main([*argv, "--training.save_strategy", "no"]) == 0
    assert not any("eval_loss" in r for r in _logs(out))
    saved = yaml.safe_load((out / "config.yaml").read_text())["training"]
    assert saved["eval_strategy"] == "no" and saved["save_strategy"] == "no"
    assert (out / "checkpoints" / "final" / "config.json").exists()


def test_eval_strategy_without_heldout_data_is_one_error(smoke_task_dir, tmp_path, capsys):
    cfg_file = tmp_path / "sft.yaml"
    cfg = raw_config(smoke_task_dir, tmp_path / "run", "sft", eval_strategy="steps")
    cfg_file.write_text(yaml.safe_dump(cfg))
    assert main(["train", "sft", "--config", str(cfg_file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("irlalign: error: training.eval_strategy: 'steps' needs held-out")


def test_eval_policy_matches_the_runs_heldout_mle(smoke_task_dir, tmp_path, capsys):
    """`irlalign eval policy` on the final checkpoint gives the run's last `eval_loss/mle` (one
    evaluation batch holds all 16 held-out rows, so both are the mean over the same tokens)."""
    out = tmp_path / "sft"
    cfg = _with_eval(smoke_task_dir, out, "sft", max_steps=2, per_device_eval_batch_size=16)
    final = train(resolve("sft", cfg))["final_checkpoint"]
    logged = [r for r in _logs(out) if "eval_loss/mle" in r][-1]["eval_loss/mle"]
    capsys.readouterr()
    data = str(smoke_task_dir / "demos")
    assert main(["eval", "policy", "--model", final, "--data", data, "--max-length", "32"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_rows"] == 16 and result["n_tokens"] > 0
    assert result["nll_per_token"] == pytest.approx(logged, rel=1e-4)
    assert result["perplexity"] == pytest.approx(math.exp(logged), rel=1e-4)
    assert (
        main(["eval", "policy", "--model", final, "--data", str(smoke_task_dir / "preferences")])
        == 2
    )
    assert "policy evaluation needs prompt/completion or messages rows" in capsys.readouterr().err
