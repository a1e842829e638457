"""The RL loops' completion tables: `samples.jsonl` rows with the sequence reward and, for dense
rewards, per-token rewards next to readable token texts; the report shows them."""

from __future__ import annotations

import json
import math
from pathlib import Path

from irlalign.methods import resolve, train


def _config(task: Path, out: Path, every: int, reward_mode: str = "dense") -> dict:
    return {
        "model": {"path": str(task / "pi_init")},
        "data": {"train": str(task / "demos")},
        "method": {
            "reward_model": "gold",
            "reward_mode": reward_mode,
            "k": 2,
            "prompts_per_step": 2,
            "sampling": {"max_new_tokens": 8},
        },
        "training": {
            "output_dir": str(out),
            "max_steps": 2,
            "save_steps": 2,
            "seed": 0,
            "use_cpu": True,
            "disable_tqdm": True,
            "log_completions_steps": every,
        },
        "eval": {"synthetic_task": str(task), "samples": 1},
    }


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]


def test_rloo_writes_completions_with_token_rewards(smoke_task_dir, tmp_path):
    out = tmp_path / "rloo"
    train(resolve("rloo", _config(smoke_task_dir, out, every=1)))
    rows = _rows(out)
    assert sorted({r["step"] for r in rows}) == [1, 2]
    assert len(rows) == 2 * 4  # every completion of the 2 prompts × k = 2, each step
    for row in rows:
        assert {"prompt", "completion", "reward", "tokens", "token_rewards"} <= set(row)
        assert len(row["tokens"]) == len(row["token_rewards"])
        assert math.isclose(row["reward"], sum(row["token_rewards"]), abs_tol=1e-4)
        # decoded one id at a time: the pieces are the completion's words, not raw BPE
        words = [t.strip() for t in row["tokens"] if t.strip() and not t.startswith("<")]
        assert " ".join(words) == row["completion"].strip()

    from irlalign.report import write_report

    page = write_report([out], tmp_path / "r.html").read_text()
    assert "samples (samples.jsonl)" in page and 'class="tok"' in page


def test_ppo_terminal_rewards_log_the_first_step_without_token_rewards(smoke_task_dir, tmp_path):
    out = tmp_path / "ppo"
    raw = _config(smoke_task_dir, out, every=5, reward_mode="terminal")
    raw["method"] |= {"k": 1, "ppo_epochs": 1, "num_minibatches": 1}
    train(resolve("ppo", raw))
    rows = _rows(out)
    assert {r["step"] for r in rows} == {1}  # the first step, then every 5th (none in 2 steps)
    assert all("tokens" not in r and isinstance(r["reward"], float) for r in rows)


def test_completion_logging_can_be_turned_off(smoke_task_dir, tmp_path):
    out = tmp_path / "rloo"
    train(resolve("rloo", _config(smoke_task_dir, out, every=0)))
    assert not (out / "samples.jsonl").exists()
