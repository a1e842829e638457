"""Every trainer runs a few steps on the tiny model through the same pipeline the CLI uses."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from conftest import raw_config
from irlalign.cli.main import main
from irlalign.methods import resolve, train

LOSS_KEY = {
    "sft": "loss/mle",
    "iqlearn": "loss/td",
    "reward": "rewards/accuracy",
    "dpo": "rewards/margin",
}


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("method", ["sft", "iqlearn", "reward", "dpo"])
def test_trainer_runs_and_writes_the_run_folder(method, smoke_task_dir, tmp_path):
    out = tmp_path / method
    results = train(resolve(method, raw_config(smoke_task_dir, out, method)))
    for name in ("config.yaml", "env.json", "metrics.jsonl", "eval.json"):
        assert (out / name).exists(), name
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in logs if "loss" in r]
    assert len(steps) == 3 and all(math.isfinite(r["loss"]) for r in steps)
    assert all(LOSS_KEY[method] in r for r in steps)
    assert logs[0]["data/kept"] > 0
    # Every weight the method trains has moved (the reward model's new score head has no
    # starting value to compare with; its backbone is compared like the LMs').
    kind = AutoModelForSequenceClassification if method == "reward" else AutoModelForCausalLM
    before = _params(AutoModelForCausalLM.from_pretrained(smoke_task_dir / "pi_init"))
    after = _params(kind.from_pretrained(results["final_checkpoint"]))
    shared = [n for n in after if n in before]
    assert len(shared) >= len(after) - 1
    unchanged = [n for n in shared if torch.equal(before[n], after[n])]
    assert not unchanged, f"{method} left these weights untouched: {unchanged}"


def _weights(folder) -> dict:
    tensors = load_file(str(folder / "model.safetensors"))
    heads = folder / "irl_heads.safetensors"
    return {**tensors, **(load_file(str(heads)) if heads.exists() else {})}


def test_a_resumed_trainer_run_ends_where_an_uninterrupted_one_does(smoke_task_dir, tmp_path):
    """IQLearn with its value head (a checkpoint with extra heads), stopped after its step-2
    checkpoint and resumed: the final weights, heads included, equal an uninterrupted run's."""

    def raw(out, **training):
        cfg = raw_config(smoke_task_dir, out, "iqlearn", max_steps=4, save_steps=2, **training)
        return {**cfg, "method": {"value_head": True}}

    full = Path(train(resolve("iqlearn", raw(tmp_path / "full")))["final_checkpoint"])
    died = tmp_path / "died" / "checkpoints"
    shutil.copytree(full.parent / "checkpoint-2", died / "checkpoint-2")
    resumed = train(resolve("iqlearn", raw(tmp_path / "died", resume_from_checkpoint=True)))
    a, b = _weights(full), _weights(Path(resumed["final_checkpoint"]))
    assert set(a) == set(b) and any("irl_heads" in k or "value" in k for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dpo_reference_stays_frozen(smoke_task_dir, tmp_path):
    from irlalign.methods import METHODS
    from irlalign.trainers.run import build_trainer, load_split

    cfg = resolve("dpo", raw_config(smoke_task_dir, tmp_path / "dpo", "dpo"))
    from irlalign.modeling.load import load_tokenizer

    tok = load_tokenizer(cfg.model.path)
    ds, _ = load_split(cfg, METHODS[cfg.method_name], tok, cfg.data.train, "train", None)
    trainer, _ = build_trainer(cfg, METHODS[cfg.method_name], tok, ds, None)
    ref_before = _params(trainer.ref_model)
    trainer.train()
    assert all(torch.equal(ref_before[n], p) for n, p in trainer.ref_model.named_parameters())
    assert not all(torch.equal(ref_before[n], p) for n, p in trainer.model.named_parameters())


def test_cli_train_with_overrides_and_errors(smoke_task_dir, tmp_path, capsys):
    import yaml

    cfg_file = tmp_path / "sft.yaml"
    cfg_file.write_text(yaml.safe_dump(raw_config(smoke_task_dir, tmp_path / "cli", "sft")))
    assert (
        main(
            [
                "train",
                "sft",
                "--config",
                str(cfg_file),
                "--training.max_steps",
                "1",
                "--method.entropy_beta",
                "0.01",
            ]
        )
        == 0
    )
    saved = yaml.safe_load((tmp_path / "cli" / "config.yaml").read_text())
    assert saved["method"]["entropy_beta"] == 0.01 and saved["training"]["max_steps"] == 1
    assert main(["train", "sft", "--config", str(cfg_file), "--method.lamda", "1"]) == 2
    assert "unknown key(s) in section 'method': lamda" in capsys.readouterr().err


def test_bad_rows_fail_before_training(smoke_task_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "<bos> food big <sep>", "completion": "dog <eos>"}\n'
        '{"prompt": "<bos> food big <sep>", "completion": 7}\n'
    )
    cfg = raw_config(smoke_task_dir, tmp_path / "bad", "sft")
    cfg["data"]["train"] = str(bad)
    with pytest.raises(ValueError, match=r"bad.jsonl.*row 1.*completion"):
        train(resolve("sft", cfg))
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_lora_run_saves_adapter_and_merged_model(smoke_task_dir, tmp_path):
    out = tmp_path / "lora"
    cfg = raw_config(smoke_task_dir, out, "iqlearn")
    cfg["model"]["lora"] = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    cfg["eval"] = {"synthetic_task": str(smoke_task_dir), "samples": 1}
    results = train(resolve("iqlearn", cfg))
    assert (out / "checkpoints" / "final" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(results["merged_checkpoint"])
    base = _params(AutoModelForCausalLM.from_pretrained(smoke_task_dir / "pi_init"))
    after = _params(merged)
    changed = [n for n in after if not torch.equal(base[n], after[n])]
    assert changed and all("q_proj" in n or "v_proj" in n for n in changed)
    assert "normalised_score" in results["synthetic"]
