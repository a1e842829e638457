"""RLOO and PPO on the smoke task against the dense `implicit:` and `log_ratio:` reward models:
the strings resolve, the per-token rewards reach the loss, and a few steps train the policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from irlalign.methods import resolve, train
from irlalign.modeling.implicit_reward import load_causal_lm


@pytest.fixture(scope="module")
def demonstrator(smoke_task_dir, tmp_path_factory) -> Path:
    """π_init with noise on its weights: a stand-in for an IQLearn / SFT checkpoint."""
    model, tok = load_causal_lm(smoke_task_dir / "pi_init")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    out = tmp_path_factory.mktemp("demonstrator")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _raw(task: Path, out: Path, reward_model: str, **method_kw) -> dict:
    return {
        "model": {"path": str(task / "pi_init")},
        "data": {"train": str(task / "demos")},
        "method": {
            "reward_model": reward_model,
            "prompts_per_step": 2,
            "sampling": {"max_new_tokens": 8},
            **method_kw,
        },
        "training": {
            "output_dir": str(out),
            "max_steps": 2,
            "learning_rate": 1e-2,
            "save_steps": 2,
            "seed": 0,
            "use_cpu": True,
            "disable_tqdm": True,
        },
    }


CASES = {
    "rloo-implicit": ("rloo", "implicit", {"k": 2, "advantage": "reward_to_go"}),
    "rloo-log_ratio": ("rloo", "log_ratio", {"k": 2}),
    "ppo-implicit": ("ppo", "implicit", {"ppo_epochs": 1}),
    "ppo-log_ratio": ("ppo", "log_ratio", {"ppo_epochs": 1}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_loop_trains_against_a_dense_reward_string(case, smoke_task_dir, demonstrator, tmp_path):
    method, kind, kw = CASES[case]
    spec = f"{kind}:{demonstrator},{smoke_task_dir / 'pi_init'}"
    results = train(resolve(method, _raw(smoke_task_dir, tmp_path / "run", spec, **kw)))
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    # π_demonstrator ≠ π_init, so the rewards are not all zero, and they stay finite.
    assert all(torch.isfinite(torch.tensor(r["rl/reward"])) for r in rows)
    assert any(r["rl/reward"] != 0.0 for r in rows)
    assert Path(results["final_checkpoint"]).exists()
