"""`irlalign eval rm` on preference files, checked against the synthetic benchmark's own numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import load_from_disk

from conftest import raw_config
from irlalign.cli.main import main
from irlalign.methods import resolve, train


def _reward_model(task_dir, out, method) -> str:
    return train(resolve(method, raw_config(task_dir, out, method, max_steps=2, save_steps=5)))[
        "final_checkpoint"
    ]


@pytest.fixture(scope="module")
def bt_model(smoke_task_dir, tmp_path_factory) -> str:
    return _reward_model(smoke_task_dir, tmp_path_factory.mktemp("bt"), "reward")


def _eval_rm(capsys, *argv) -> dict:
    capsys.readouterr()  # drop what training printed
    assert main(["eval", "rm", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def _true_order_pairs(task_dir: Path, path: Path) -> int:
    """The held-out pairs `synthetic eval-rm` ranks, chosen = the higher true return (pairs of
    equal return do not count there and are left out)."""
    rows = load_from_disk(str(task_dir / "preferences"))["test"]
    n = 0
    with open(path, "w") as f:
        for r in rows:
            if r["chosen_return"] == r["rejected_return"]:
                continue
            better = r["chosen_return"] > r["rejected_return"]
            pair = (r["chosen"], r["rejected"]) if better else (r["rejected"], r["chosen"])
            f.write(json.dumps({"prompt": r["prompt"], "chosen": pair[0], "rejected": pair[1]}))
            f.write("\n")
            n += 1
    return n


def test_eval_rm_agrees_with_synthetic_eval_rm(bt_model, smoke_task_dir, tmp_path, capsys):
    pairs = tmp_path / "true_order.jsonl"
    n = _true_order_pairs(smoke_task_dir, pairs)
    out = tmp_path / "rm_eval.json"
    mine = _eval_rm(capsys, "--model", bt_model, "--data", str(pairs), "--out", str(out))
    assert json.loads(out.read_text()) == mine
    assert main(["synthetic", "eval-rm", "--task", str(smoke_task_dir), "--rm", bt_model]) == 0
    theirs = json.loads(capsys.readouterr().out)
    assert mine["n_pairs"] == n and "sigma_bins" not in mine
    assert mine["accuracy"] == pytest.approx(theirs["pairwise_accuracy"], abs=1e-12)
    # On the file's own labels (the test split as it is): the same pairs, the same scores.
    labelled = _eval_rm(capsys, "--model", bt_model, "--data", str(smoke_task_dir / "preferences"))
    assert labelled["n_pairs"] == theirs["n_pairs"]


def test_eval_rm_bins_accuracy_by_sigma_for_ava(smoke_task_dir, tmp_path, capsys):
    model = _reward_model(smoke_task_dir, tmp_path / "ava", "ava")
    data = str(smoke_task_dir / "preferences")
    result = _eval_rm(capsys, "--model", model, "--data", data)
    bins = result["sigma_bins"]
    assert sum(b["n_pairs"] for b in bins) == result["n_pairs"] == 32
    assert all(0 <= b["accuracy"] <= 1 and b["sigma_low"] <= b["sigma_high"] for b in bins)
    assert [b["sigma_low"] for b in bins] == sorted(b["sigma_low"] for b in bins)


def test_eval_rm_rejects_data_that_is_not_preferences(bt_model, smoke_task_dir, capsys):
    data = str(smoke_task_dir / "demos")
    assert main(["eval", "rm", "--model", bt_model, "--data", data]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"irlalign: error: {data} [test]: expected preference rows (prompt, chosen, rejected)"
    ]
