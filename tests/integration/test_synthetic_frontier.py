"""Quality–diversity frontiers on the smoke task: `synthetic eval --temperatures`, the sampler's
temperature, and `synthetic frontier`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from irlalign.cli.main import main
from irlalign.synthetic.build import load_eval_prompts, load_task
from irlalign.synthetic.model import action_token_ids
from irlalign.synthetic.runner import eval_frontier, eval_policy
from irlalign.synthetic.sampling import sample_model
from irlalign.synthetic.text import prompt_text


@pytest.fixture(scope="module")
def frontier_file(smoke_task_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("frontier") / "pi_init.json"
    policy = str(smoke_task_dir / "pi_init")
    argv = ["synthetic", "eval", "--task", str(smoke_task_dir), "--policy", policy]
    argv += ["--temperatures", "0.5,1.5", "--greedy", "--samples", "2", "--out", str(out)]
    assert main(argv) == 0
    return out


def test_frontier_eval_rows(frontier_file, capsys):
    result = json.loads(frontier_file.read_text())
    rows = result["rows"]
    assert [(r["decoding"], r["temperature"]) for r in rows] == [
        ("sample", 0.5),
        ("sample", 1.5),
        ("greedy", 0.0),
    ]
    for row in rows[:2]:
        assert math.isfinite(row["kl_expert"]) and math.isfinite(row["self_bleu"])
        assert row["n_samples"] == 2 * row["n_prompts"]
    greedy = rows[2]
    assert greedy["kl_expert"] is None and greedy["kl_ref"] is None
    assert greedy["entropy"] == 0.0 and math.isfinite(greedy["normalised_score"])
    assert greedy["entropy"] < rows[0]["entropy"] < rows[1]["entropy"]


def test_frontier_eval_prints_a_table(smoke_task_dir, capsys):
    policy = str(smoke_task_dir / "pi_init")
    argv = ["synthetic", "eval", "--task", str(smoke_task_dir), "--policy", policy]
    assert main([*argv, "--temperatures", "1", "--greedy", "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "| T = 1 |" in out and "| greedy |" in out and "n/a |" in out
    with pytest.raises(SystemExit):  # T = 0 is --greedy's job
        main([*argv, "--temperatures", "0,1"])
    assert "greedy" in capsys.readouterr().err


def test_frontier_at_temperature_one_is_the_default_eval(smoke_task_dir):
    policy = str(smoke_task_dir / "pi_init")
    (row,) = eval_frontier(smoke_task_dir, policy, [1.0], samples=2, seed=3)["rows"]
    plain = eval_policy(smoke_task_dir, policy, samples=2, seed=3)
    del plain["policy"], plain["seed"]
    assert row == {"decoding": "sample", "temperature": 1.0, **plain}


def test_model_sampler_applies_the_temperature(smoke_task_dir):
    """The first response token of each prompt: its recorded log-prob is log π_T from an
    independent forward pass, and the tokens drawn follow π_T rather than π_1 (their mean
    log-likelihood ratio estimates KL(π_T ‖ π_1) > 0; under π_1 it would be negative)."""
    torch.set_num_threads(1)
    task = load_task(smoke_task_dir)
    prompts = load_eval_prompts(task, smoke_task_dir)
    folder = smoke_task_dir / "pi_init"
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    temperature = 0.3
    drawn = sample_model(model, tokenizer, task, prompts, 64, seed=0, temperature=temperature)
    texts = [prompt_text(task, k, w) for k, w in zip(prompts.topics, prompts.words, strict=True)]
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[:, -1, action_token_ids(task)].double()
    log_t = torch.log_softmax(logits / temperature, -1).numpy()
    log_1 = torch.log_softmax(logits, -1).numpy()
    first = np.array([a[0] for a in drawn.actions])
    rows = drawn.prompt_index
    recorded = np.array([lp[0] for lp in drawn.logp])
    np.testing.assert_allclose(recorded, log_t[rows, first], atol=1e-4)
    ratio = log_t[rows, first] - log_1[rows, first]
    exact = (np.exp(log_t) * (log_t - log_1)).sum(-1)[rows].mean()
    se = ratio.std(ddof=1) / np.sqrt(len(ratio))
    assert exact > 10 * se
    assert abs(ratio.mean() - exact) < 4 * se


def test_frontier_command_compares_two_runs(smoke_task_dir, frontier_file, tmp_path, capsys):
    expert = tmp_path / "expert.json"
    argv = ["synthetic", "eval", "--task", str(smoke_task_dir), "--policy", "oracle:expert"]
    assert main([*argv, "--temperatures", "0.5,1.5", "--samples", "2", "--out", str(expert)]) == 0
    capsys.readouterr()
    same = ["synthetic", "frontier", "--runs", str(frontier_file), str(frontier_file)]
    assert main(same) == 0
    assert "verdict: equivalent" in capsys.readouterr().out
    versus = ["synthetic", "frontier", "--runs", str(frontier_file), str(expert)]
    assert main([*versus, "--diversity", "entropy"]) == 0
    out = capsys.readouterr().out
    assert "verdict:" in out and "diversity = entropy" in out
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"policy": "x", "normalised_score": 0.1}))
    assert main(["synthetic", "frontier", "--runs", str(single), str(expert)]) == 2
