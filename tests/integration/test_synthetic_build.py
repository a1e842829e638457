"""Building the benchmark, the HF tokenizer/model round trip, evaluation and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from datasets import load_from_disk
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForSequenceClassification,
)

from irlalign.cli.main import main
from irlalign.synthetic.build import load_task
from irlalign.synthetic.runner import eval_policy, eval_reward_model

METRIC_KEYS = {
    "gold_return",
    "gold_return_se",
    "normalised_score",
    "kl_ref",
    "kl_expert",
    "distinct_2",
    "self_bleu",
    "entropy",
}


def test_build_writes_every_dataset(smoke_task_dir, smoke_config):
    for name in ("pretrain", "demos", "preferences"):
        dd = load_from_disk(str(smoke_task_dir / name))
        assert set(dd) == {"train", "test"}
    demos = load_from_disk(str(smoke_task_dir / "demos"))["train"]
    assert demos.column_names == ["prompt", "completion", "true_return", "source"]
    assert len(demos) == smoke_config.n_demos
    prefs = load_from_disk(str(smoke_task_dir / "preferences"))["train"]
    assert {
        "prompt",
        "chosen",
        "rejected",
        "chosen_source",
        "rejected_source",
        "chosen_return",
        "rejected_return",
    } <= set(prefs.column_names)
    assert len(load_from_disk(str(smoke_task_dir / "eval_prompts"))) == smoke_config.n_eval_prompts
    assert load_task(smoke_task_dir).config == smoke_config


@pytest.mark.slow  # builds the default benchmark (pretrains π_init once per cache)
def test_preference_labels_follow_true_returns(default_task_dir):
    prefs = load_from_disk(str(default_task_dir / "preferences"))["train"]
    chosen, rejected = np.array(prefs["chosen_return"]), np.array(prefs["rejected_return"])
    differ = chosen != rejected
    # Bradley–Terry labels at temperature 1 agree with the true ordering most of the time,
    # but not always (label noise is part of the task); measured 0.78 on the default seed.
    agree = (chosen[differ] > rejected[differ]).mean()
    assert 0.65 < agree < 0.95
    assert len(set(prefs["chosen_source"])) == 5


def test_tokenizer_and_model_reload_identically(smoke_task_dir, tmp_path):
    folder = smoke_task_dir / "pi_init"
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    text = "<bos> food big cat <sep> tiny dog <eos>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.convert_ids_to_tokens(ids)[0] == tok.bos_token
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    model2 = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert tok2(text, add_special_tokens=False)["input_ids"] == ids
    x = torch.tensor([ids])
    with torch.no_grad():
        assert torch.equal(model(x).logits, model2(x).logits)
    chat = [{"role": "user", "content": "food big cat"}, {"role": "assistant", "content": "dog"}]
    assert (
        tok.apply_chat_template(chat, tokenize=False).split()
        == "<bos> food big cat <sep> dog <eos>".split()
    )


def test_eval_policy_on_checkpoint_and_oracle(smoke_task_dir):
    model_row = eval_policy(smoke_task_dir, str(smoke_task_dir / "pi_init"), samples=2)
    expert_row = eval_policy(smoke_task_dir, "oracle:expert", samples=2)
    assert METRIC_KEYS <= set(model_row) and METRIC_KEYS <= set(expert_row)
    assert expert_row["kl_expert"] == 0.0
    assert all(np.isfinite(model_row[k]) for k in METRIC_KEYS)
    with pytest.raises(ValueError, match="unknown oracle policy"):
        eval_policy(smoke_task_dir, "oracle:nobody")


class TrueReturnRM:
    """Test double: r* per token, and the exact true return as the score."""

    def __init__(self, task):
        self.task = task

    def token_rewards(self, prompts, responses):
        from irlalign.modeling.reward import ResponseRewards
        from irlalign.synthetic import oracle
        from irlalign.synthetic.text import parse_prompt, parse_response

        r = self.task.reward_table()
        out = []
        for p, y in zip(prompts, responses, strict=True):
            topic, words = parse_prompt(self.task, p)
            actions = parse_response(self.task, y)
            rewards = oracle.sequence_rewards(r, topic, words[-1], actions)
            out.append(ResponseRewards(actions.tolist(), rewards))
        return out

    def score(self, prompts, responses):
        return np.array([row.rewards.sum() for row in self.token_rewards(prompts, responses)])


def test_eval_rm_with_oracle_double_and_saved_classifier(smoke_task_dir, tmp_path):
    perfect = eval_reward_model(smoke_task_dir, TrueReturnRM(load_task(smoke_task_dir)))
    assert perfect["pairwise_accuracy"] == 1.0 and perfect["spearman"] == pytest.approx(1.0)
    assert perfect["recovery_spearman_raw"] == pytest.approx(1.0)
    tok = AutoTokenizer.from_pretrained(smoke_task_dir / "pi_init")
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_labels=1,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert main(["synthetic", "eval-rm", "--task", str(smoke_task_dir), "--rm", str(tmp_path)]) == 0


def test_cli_build_and_eval(tmp_path, repo_root, capsys):
    out = tmp_path / "task"
    cfg = repo_root / "configs" / "synthetic" / "smoke.yaml"
    assert main(["synthetic", "build", "--out", str(out), "--config", str(cfg), "--seed", "3"]) == 0
    assert load_task(out).config.seed == 3
    capsys.readouterr()
    assert (
        main(
            [
                "synthetic",
                "eval",
                "--task",
                str(out),
                "--policy",
                str(out / "pi_init"),
                "--samples",
                "2",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert METRIC_KEYS <= set(result)


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["synthetic", "eval", "--task", str(tmp_path), "--policy", "oracle:expert"]) == 2
    assert "task.json not found" in capsys.readouterr().err


def test_console_script_help_and_version():
    exe = [sys.executable, "-m", "irlalign.cli.main"]
    out = subprocess.run([*exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("irlalign ")
    out = subprocess.run([*exe, "--help"], capture_output=True, text=True, check=True)
    assert "quickstart" in out.stdout and "synthetic" in out.stdout
