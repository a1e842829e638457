"""`training.push_to_hub` for the pipelines (demo_rl, AfD, FRFT, adversarial rounds): each trains
several models and pushes its final policy, with a card for the pipeline saying which model it
is. The Hub calls are replaced (the Hub is unreachable here): tests stop at the upload."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from irlalign.methods import resolve, train


@pytest.fixture
def fake_hub(monkeypatch):
    """Replaces the two Hub calls; records what the upload saw in the folder."""
    import huggingface_hub

    calls: list[dict] = []

    def upload_folder(*, repo_id, folder_path, **kwargs):
        card = (Path(folder_path) / "README.md").read_text()
        calls.append({"repo_id": repo_id, "folder": folder_path, "card": card})

    monkeypatch.setattr(huggingface_hub, "create_repo", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    return calls


PUSH = {"push_to_hub": True, "hub_model_id": "someone/pipeline-policy"}
STEPS = {"max_steps": 2, "per_device_train_batch_size": 8, "learning_rate": 1e-2}


def test_demo_rl_pushes_its_rl_policy_with_a_pipeline_card(smoke_task_dir, tmp_path, fake_hub):
    run = tmp_path / "demo"
    raw = {
        "model": {"path": str(smoke_task_dir / "pi_init")},
        "data": {"train": str(smoke_task_dir / "demos"), "max_length": 32, "max_rows": 16},
        "method": {
            "reward": "log_ratio",
            "turn_markers": [],
            "sampling": {"max_new_tokens": 8},
            "sft_training": STEPS,
            "rl_method": {"k": 2, "prompts_per_step": 2},
            "rl_training": {"max_steps": 1, "save_steps": 5},
        },
        "training": {"output_dir": str(run), "seed": 0, "use_cpu": True, **PUSH},
    }
    results = train(resolve("demo_rl", raw))
    final = run / "rl" / "checkpoints" / "final"
    assert [(c["repo_id"], c["folder"]) for c in fake_hub] == [(PUSH["hub_model_id"], str(final))]
    card = fake_hub[0]["card"]
    assert card.startswith("---\n") and "# demo: demo_rl (irlalign)" in card
    assert "## Which model this is" in card and "rl/checkpoints/final" in card
    assert "RLOO against the log_ratio reward" in card and str(run / "sft") in card
    assert "| method.reward | log_ratio |" in card  # the pipeline's config, not the phase's
    recorded = json.loads((run / "eval.json").read_text())
    assert recorded["hub_url"] == "https://huggingface.co/someone/pipeline-policy"
    assert recorded["pushed_checkpoint"] == str(final) == results["pushed_checkpoint"]
    # The phases do not push: the parent's `training` is not theirs.
    assert "push_to_hub" not in _yaml(run / "rl") and "push_to_hub" not in _yaml(run / "sft")


def _yaml(run: Path) -> dict:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())["training"]


def _policy(folder: Path, task: Path) -> str:
    """A stand-in for a phase's final policy: a copy of π_init."""
    shutil.copytree(task / "pi_init", folder)
    return str(folder)


def _cfg(method: str, task: Path, out: Path):
    data = "preferences" if method == "frft" else "demos"
    raw = {
        "model": {"path": str(task / "pi_init")},
        "data": {"train": str(task / data)},
        "training": {"output_dir": str(out), **PUSH},
    }
    return resolve(method, raw)


class _Run:
    def __init__(self, out: Path):
        self.out = out

    def write_eval(self, results: dict) -> None:
        (self.out / "eval.json").write_text(json.dumps(results, default=str))


GOLD = {"normalised_score": 0.25, "gold_return": 1.5, "kl_ref": 2.0}


def _results(method: str, out: Path, task: Path) -> tuple[dict, str, str]:
    """The results a finished pipeline hands to its `_publish`, the folder it must push and a
    phrase its card must hold."""
    if method == "afd":
        policy = _policy(out / "rl" / "checkpoints" / "final", task)
        res = {"sft_model": str(out / "sft"), "rl": {"final_checkpoint": policy, "synthetic": GOLD}}
        return res, policy, "against the standardised logit of the init_sft reward model"
    if method == "frft":
        rounds = [
            {"round": k, "policy_out": _policy(out / "frft" / f"round_{k:02d}" / "p", task),
             "rm": str(out / "frft" / f"round_{k:02d}" / "rm"), "gold": GOLD}
            for k in range(2)
        ]  # fmt: skip
        vanilla = [{"round": 0, "policy_out": str(out / "v"), "rm": "x"}]
        res = {"arms": {"vanilla": vanilla, "frft": rounds}}
        return res, rounds[-1]["policy_out"], "the `frft` arm after round 1"
    rounds = [
        {"round": 0, "rl_skipped": False, "synthetic": GOLD},
        {"round": 1, "rl_skipped": True, "synthetic": None},
    ]
    policy = _policy(out / "round_0" / "policy" / "checkpoints" / "final", task)
    return {"rounds": rounds, "final_checkpoint": policy}, policy, "round 0's RL policy"


@pytest.mark.parametrize("method", ["afd", "frft", "adversarial"])
def test_pipeline_pushes_its_final_policy(method, smoke_task_dir, tmp_path, fake_hub):
    import importlib

    out = tmp_path / method
    out.mkdir()
    cfg = _cfg(method, smoke_task_dir, out)
    results, policy, phrase = _results(method, out, smoke_task_dir)
    module = importlib.import_module(f"irlalign.pipelines.{method}")
    run = _Run(out)
    if method == "afd":
        published = module._publish(cfg, cfg.method_config, results, run)
    else:
        published = module._publish(cfg, results, run)
    assert [c["folder"] for c in fake_hub] == [policy]
    card = fake_hub[0]["card"]
    assert f"# {method}: {method} (irlalign)" in card and phrase in card
    assert str(Path(policy).relative_to(out)) in card
    assert "| synthetic/normalised_score | 0.25 |" in card  # the pushed policy's gold metrics
    assert 'AutoModelForCausalLM.from_pretrained("someone/pipeline-policy")' in card
    assert json.loads((out / "eval.json").read_text())["hub_url"] == published["hub_url"]


def test_a_pipeline_with_nothing_to_push_fails_before_training(smoke_task_dir, tmp_path):
    raw = {
        "model": {"path": str(smoke_task_dir / "pi_init")},
        "data": {"train": str(smoke_task_dir / "demos")},
        "method": {"rl": "none", "sft_model": str(smoke_task_dir / "pi_init")},
        "training": {"output_dir": str(tmp_path / "afd"), **PUSH},
    }
    with pytest.raises(ValueError, match=r"^training\.push_to_hub: method\.rl is 'none'"):
        train(resolve("afd", raw))
    assert not (tmp_path / "afd" / "config.yaml").exists()
    from irlalign.pipelines.adversarial import _publish

    cfg = _cfg("adversarial", smoke_task_dir, tmp_path / "adv")
    skipped = {"rounds": [{"round": 0, "rl_skipped": True}], "final_checkpoint": "x"}
    with pytest.raises(ValueError, match="every round skipped its RL phase"):
        _publish(cfg, skipped, _Run(tmp_path))
