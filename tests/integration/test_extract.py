"""Reward extraction: per-token rewards telescope, and the CLI writes them."""

from __future__ import annotations

import json

import torch

from irlalign.cli.main import main
from irlalign.data.collate import collator_for
from irlalign.extract import extract_token_rewards
from irlalign.modeling.load import ModelOptions, load_model, load_tokenizer


def test_token_rewards_telescope_to_logp_plus_v0(smoke_task_dir):
    path = str(smoke_task_dir / "pi_init")
    tok, model = load_tokenizer(path), load_model(ModelOptions(path))
    texts = ["<bos> food big <sep> dog cat <eos>", "<bos> sport tiny a <sep> big"]  # 2nd: no EOS
    enc = tok(texts, add_special_tokens=False)
    feats = []
    for ids in enc["input_ids"]:
        sep = ids.index(tok.sep_token_id)
        feats.append(
            {
                "input_ids": ids,
                "attention_mask": [1] * len(ids),
                "completion_mask": [0] * (sep + 1) + [1] * (len(ids) - sep - 1),
            }
        )
    batch = collator_for("demonstrations", tok.pad_token_id)(feats)
    tr = extract_token_rewards(model, batch, eos_id=tok.eos_token_id)
    assert tr.truncated.tolist() == [False, True]
    # γ = 1 with an EOS terminal: Σ r_t = log π(y|x) + V(s0), exactly up to fp32 round-off.
    torch.testing.assert_close(tr.sequence_reward[0], tr.sequence_logp[0] + tr.v0[0])
    assert tr.completion_mask.sum(1).tolist() == [3, 1]


def test_rewards_cli_writes_jsonl(smoke_task_dir, tmp_path):
    out = tmp_path / "r.jsonl"
    assert (
        main(
            [
                "rewards",
                "--model",
                str(smoke_task_dir / "pi_init"),
                "--data",
                str(smoke_task_dir / "demos"),
                "--split",
                "test",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 16
    first = rows[0]
    assert first["tokens"][-1] == "<eos>" and len(first["rewards"]) == len(first["tokens"])
    assert abs(sum(first["rewards"]) - first["sequence_reward"]) < 1e-4
