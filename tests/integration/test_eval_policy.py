"""`irlalign eval policy --prompts`: a policy's responses judged on the smoke task, against a
baseline; the true reward agrees exactly with `synthetic eval`; run, checkpoint and LoRA adapter
folders; bad input fails on one line before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import raw_config
from irlalign.cli.main import main


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def lora_run(smoke_task_dir, tmp_path_factory) -> Path:
    """SFT with LoRA for a few steps: `checkpoints/final` is the adapter, `final_merged` the
    merged model."""
    from irlalign.methods import resolve, train

    out = tmp_path_factory.mktemp("lora_sft") / "run"
    cfg = raw_config(smoke_task_dir, out, "sft", max_steps=3, save_steps=10)
    cfg["model"]["lora"] = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    train(resolve("sft", cfg))
    return out


@pytest.fixture(scope="module")
def prompts_file(smoke_task_dir, tmp_path_factory) -> Path:
    """Prompt-only rows outside the task folder: generation goes through `HFSampler`."""
    from datasets import load_from_disk

    rows = load_from_disk(str(smoke_task_dir / "eval_prompts"))["prompt"][:3]
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in rows))
    return path


def _eval(capsys, out: Path, *argv: str) -> dict:
    capsys.readouterr()  # drop what training printed
    assert main(["eval", "policy", *argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads(printed[: printed.rindex("}") + 1]) == summary
    return summary


def test_gold_judge_agrees_with_synthetic_eval(lora_run, smoke_task_dir, tmp_path, capsys):
    task, base = str(smoke_task_dir), str(smoke_task_dir / "pi_init")
    prompts = str(smoke_task_dir / "eval_prompts")  # inside the task: the task's own sampler
    argv = ["--model", str(lora_run), "--prompts", prompts, "--judge", "gold", "--baseline", base]
    mine = _eval(capsys, tmp_path, *argv, "--samples", "2", "--seed", "3")
    merged = str(lora_run / "checkpoints" / "final_merged")
    assert mine["model"] == merged and mine["task"] == task and mine["sampler"] == "synthetic task"
    for policy, side in ((merged, "policy"), (base, "baseline")):
        argv = ["synthetic", "eval", "--task", task, "--policy", policy, "--samples", "2"]
        assert main([*argv, "--seed", "3"]) == 0
        theirs = json.loads(capsys.readouterr().out)
        ours = mine[side]
        assert ours["judge_score"] == theirs["gold_return"]
        assert ours["judge_score_se"] == theirs["gold_return_se"]
        for key in ("mean_length", "distinct_1", "distinct_2", "self_bleu", "entropy"):
            assert ours[key] == pytest.approx(theirs[key], abs=1e-12), key
    rows = _records(tmp_path / "samples.jsonl")
    assert len(rows) == mine["n_prompts"] * 2 == 32
    pairs = [(r["judge_score"], r["baseline_judge_score"]) for r in rows]
    wins = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs]
    rate = mine["win_rate"]
    assert rate["win_rate"] == pytest.approx(sum(wins) / len(wins), abs=1e-12)
    assert rate["ci_low"] <= rate["win_rate"] <= rate["ci_high"] and rate["n_pairs"] == 32


def test_policy_against_itself_ties_everywhere(prompts_file, smoke_task_dir, tmp_path, capsys):
    """Same model, same seed: the baseline draws the very same responses, every pair ties."""
    pi_init = str(smoke_task_dir / "pi_init")
    judge = f"implicit:{pi_init}"
    argv = ["--model", pi_init, "--prompts", str(prompts_file), "--baseline", pi_init]
    summary = _eval(capsys, tmp_path, *argv, "--judge", judge, "--max-new-tokens", "8")
    assert summary["sampler"] == "generate" and summary["n_prompts"] == 3
    assert summary["win_rate"] == {
        "win_rate": 0.5, "ci_low": 0.5, "ci_high": 0.5, "tie_rate": 1.0, "n_pairs": 12,
    }  # fmt: skip
    assert summary["policy"] == summary["baseline"]
    assert 0 < summary["policy"]["mean_length"] <= 8 and summary["policy"]["entropy"] > 0
    row = _records(tmp_path / "samples.jsonl")[0]
    assert set(row) == {
        "prompt_index", "sample", "prompt", "response", "tokens", "judge_score",
        "baseline_response", "baseline_tokens", "baseline_judge_score",
    }  # fmt: skip


def test_lora_adapter_run_and_merged_folders_sample_alike(
    lora_run, prompts_file, smoke_task_dir, tmp_path, capsys
):
    adapter = lora_run / "checkpoints" / "final"
    assert (adapter / "adapter_config.json").exists() and not (adapter / "config.json").exists()
    responses = {}
    for name, model in (("adapter", adapter), ("merged", adapter.with_name("final_merged"))):
        argv = ["--model", str(model), "--prompts", str(prompts_file), "--max-new-tokens", "8"]
        summary = _eval(capsys, tmp_path / name, *argv)
        assert "judge_score" not in summary["policy"] and "win_rate" not in summary
        responses[name] = [r["response"] for r in _records(tmp_path / name / "samples.jsonl")]
    assert responses["adapter"] == responses["merged"] and len(responses["adapter"]) == 12


def test_rewards_and_sample_read_a_lora_adapter_as_its_merged_model(
    lora_run, smoke_task_dir, tmp_path, capsys
):
    """`irlalign rewards` and `irlalign sample` load the adapter folder (`final/`) onto its base
    model; the token rewards equal those of `final_merged`, and a run folder stands for it."""
    demos = str(smoke_task_dir / "demos")
    rows = {}
    for name in ("final", "final_merged"):
        out = tmp_path / f"{name}.jsonl"
        model = str(lora_run / "checkpoints" / name)
        argv = ["rewards", "--model", model, "--data", demos, "--out", str(out)]
        assert main([*argv, "--max-rows", "3"]) == 0
        rows[name] = _records(out)
    for a, b in zip(rows["final"], rows["final_merged"], strict=True):
        assert a["tokens"] == b["tokens"]
        assert a["rewards"] == pytest.approx(b["rewards"], abs=1e-4)
    capsys.readouterr()
    argv = [
        "sample",
        "--model",
        str(lora_run),
        "--prompts",
        demos,
        "-n",
        "1",
        "--max-new-tokens",
        "4",
    ]
    assert main(argv) == 0
    assert ">>> " in capsys.readouterr().out


def test_reward_model_folder_judges_and_a_json_out(prompts_file, smoke_task_dir, tmp_path, capsys):
    """A sequence classifier with one label (a Bradley–Terry folder, here untrained) judges;
    `--out x.json` writes the summary there and the samples beside it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    pi_init = smoke_task_dir / "pi_init"
    rm = tmp_path / "rm"
    AutoModelForSequenceClassification.from_pretrained(pi_init, num_labels=1).save_pretrained(rm)
    AutoTokenizer.from_pretrained(pi_init).save_pretrained(rm)
    out = tmp_path / "eval.json"
    argv = ["--model", str(pi_init), "--prompts", str(prompts_file), "--judge", str(rm)]
    assert main(["eval", "policy", *argv, "--samples", "1", "-n", "2", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    rows = _records(tmp_path / "eval.samples.jsonl")
    assert summary["n_prompts"] == 2 and len(rows) == 2
    assert summary["policy"]["self_bleu"] is None  # one sample per prompt: nothing to compare
    assert summary["policy"]["judge_score"] == pytest.approx(
        sum(r["judge_score"] for r in rows) / 2, abs=1e-6
    )


def test_prompts_read_as_the_online_loops_read_them(smoke_task_dir):
    from irlalign.eval import inputs
    from irlalign.eval.prompts import check_prompt_rows, prompt_texts
    from irlalign.loops.setup import GOLD, load_prompts
    from irlalign.modeling.load import load_tokenizer

    assert inputs.GOLD == GOLD
    tok = load_tokenizer(str(smoke_task_dir / "pi_init"))
    for data in ("demos", "preferences"):
        source = str(smoke_task_dir / data)
        mine = prompt_texts(check_prompt_rows(source, "train"), tok)
        assert mine == load_prompts(source, "train", tok)


BAD = {
    "missing prompts": (["--prompts", "{tmp}/nope.jsonl"], "nope.jsonl: no such file or folder"),
    "no prompt field": (["--prompts", "{tmp}/text.jsonl"], "field 'prompt': missing"),
    "judge is a policy": (["--judge", "{pi_init}"], "not a reward model"),
    "zero samples": (["--samples", "0"], "--samples: expected a number >= 1, got 0"),
    "zero prompts": (["-n", "0"], "--num-prompts: expected a number >= 1, got 0"),
    "gold without a task": (["--judge", "gold"], "--judge gold: the synthetic task's true"),
    "missing model": (["--model", "{tmp}/none"], "--model: {tmp}/none: no such"),
    "judge with --data": (["--data", "{tmp}/text.jsonl", "--judge", "gold"], "judged mode"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_before_any_model_loads(
    case, prompts_file, smoke_task_dir, tmp_path, capsys, monkeypatch
):
    from irlalign.eval import checkpoints

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(checkpoints, "load_policy_model", no_model)
    (tmp_path / "text.jsonl").write_text(json.dumps({"text": "hello"}) + "\n")
    names = {"tmp": tmp_path, "pi_init": smoke_task_dir / "pi_init"}
    flags, message = (part for part in BAD[case])
    argv = {"--model": str(smoke_task_dir / "pi_init"), "--prompts": str(prompts_file)}
    extra = [flag.format(**names) for flag in flags]
    for flag in list(argv):
        if flag in extra or (flag == "--prompts" and "--data" in extra):
            argv.pop(flag)
    args = [x for pair in argv.items() for x in pair] + extra
    assert main(["eval", "policy", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("irlalign: error: ")
    assert message.format(**names) in err[0]
