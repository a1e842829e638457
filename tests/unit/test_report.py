"""`irlalign report`: the collector on hand-made run folders, a self-contained page naming every
run, and (where a headless Chromium is installed) a rendered page that is not blank."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from irlalign.cli.main import main
from irlalign.report.collect import (
    eval_scalars,
    eval_tables,
    find_best_of_n,
    load_run,
)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _rl_run(path: Path, scale: float = 1.0) -> Path:
    """An RL run: config, curves (losses, rewards, KL, eval scores, lr), eval.json, samples."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("method_name: rloo\ntraining:\n  max_steps: 4\n")
    _write_jsonl(
        path / "metrics.jsonl",
        [
            {
                "step": s,
                "time/elapsed_s": 0.1 * s,
                "loss/total": scale / s,
                "rl/reward": scale * s,
                "rl/return": s - 1.0,
                "policy/kl": 0.1 * s,
                "rl/lr": 1e-3,
                **({"eval/normalised_score": 0.2 * s, "eval/gap_closed": 0.1 * s} if s % 2 else {}),
            }
            for s in (1, 2, 3, 4)
        ],
    )
    eval_ = {"final_checkpoint": "x", "steps": 4, "synthetic": {"normalised_score": 0.5 * scale}}
    (path / "eval.json").write_text(json.dumps(eval_))
    _write_jsonl(
        path / "samples.jsonl",
        [
            {
                "step": 4,
                "prompt": "<bos> a <sep>",
                "completion": "good word",
                "reward": 0.5,
                "tokens": ["good", " word"],
                "token_rewards": [1.0, -0.5],
            }
        ],
    )
    return path


def _afd_run(path: Path) -> Path:
    """A best-of-N pipeline folder with a child reward-model run and a frontier file."""
    path.mkdir(parents=True)
    point = lambda n, s: {"n": n, "log2_n": 0.0, "normalised_score": s}  # noqa: E731
    bon = {"pool_size": 4, "curves": {"a": [point(1, 0.6), point(4, 0.8)], "b": [point(1, 0.6)]}}
    rms = {"a": {"heldout_accuracy": 0.7, "path": "p"}, "b": {"heldout_accuracy": 0.6}}
    (path / "eval.json").write_text(json.dumps({"best_of_n": bon, "reward_models": rms}))
    _write_jsonl(path / "samples.jsonl", [{"prompt": "p", "init": "x", "sft": "y", "demo": "z"}])
    frontier = {
        "policy": "sft",
        "rows": [
            {"decoding": "sample", "temperature": t, "normalised_score": q, "self_bleu": b}
            for t, q, b in ((0.7, 0.7, 0.3), (1.0, 0.6, 0.1))
        ],
    }
    (path / "frontier.json").write_text(json.dumps(frontier))
    child = path / "rm_a" / "checkpoints" / "final"
    child.mkdir(parents=True)  # weights only: not a run
    _write_jsonl(path / "rm_a" / "metrics.jsonl", [{"step": 5, "loss/total": 0.4}])
    return path


def test_collector_reads_curves_eval_samples_and_children(tmp_path):
    run = load_run(_rl_run(tmp_path / "rl"))
    assert run.config.startswith("method_name: rloo")
    assert run.curves["rl/reward"] == ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert run.curves["eval/normalised_score"][0] == [1.0, 3.0]
    assert "time/elapsed_s" not in run.curves and "step" not in run.curves
    assert eval_scalars(run.eval) == {
        "final_checkpoint": "x",
        "steps": 4,
        "synthetic.normalised_score": 0.5,
    }
    assert run.samples[0]["tokens"] == ["good", " word"]

    afd = load_run(_afd_run(tmp_path / "afd"))
    assert list(find_best_of_n(afd.eval)) == [""]
    assert set(eval_tables(afd.eval)) == {"reward_models"}
    assert eval_scalars(afd.eval) == {"best_of_n.pool_size": 4}  # curves and tables shown apart
    assert list(afd.frontiers) == ["frontier.json"]
    assert [c.name for c in afd.children] == ["afd/rm_a"]
    assert afd.children[0].curves["loss/total"] == ([5.0], [0.4])


def test_collector_skips_torn_lines_and_summary_rows(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"row": "π_ref", "gold_return": 1.0}\n{"step": 1, "lo')
    run = load_run(tmp_path)
    assert run.curves == {} and run.eval == {} and run.config is None


def _report(tmp_path: Path) -> tuple[Path, str]:
    a, b = _rl_run(tmp_path / "run_a"), _rl_run(tmp_path / "run_b", scale=2.0)
    afd = _afd_run(tmp_path / "afd")
    out = tmp_path / "out" / "report.html"
    assert main(["report", str(a), str(b), str(afd), "--out", str(out)]) == 0
    return out, out.read_text()


def test_report_is_one_self_contained_page_naming_every_run(tmp_path):
    out, page = _report(tmp_path)
    for name in ("run_a", "run_b", "afd", "afd/rm_a"):
        assert f">{name}</h2>" in page
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert links and not [u for u in links if u.startswith(("http://", "https://", "//"))]
    images = re.findall(r'<img src="([^"]*)"', page)
    assert images and all(u.startswith("data:image/png;base64,") for u in images)
    assert "<script" not in page and "<link" not in page
    files = sorted(p.name for p in (out.parent / "report_files").iterdir())
    assert len(files) == len(images) and all(f.endswith(".png") for f in files)
    # several runs: overlaid shared curves and the side-by-side final metrics
    assert "curves the runs share" in page and "compare_rl_reward.png" in files
    assert "best-of-N" in page and "quality–diversity frontier" in page


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_the_page_renders_in_a_headless_browser(tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium, chromium-browser or google-chrome on PATH to render the page")
    out, _ = _report(tmp_path)
    shot = tmp_path / "shot.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}"]
    cmd += ["--window-size=1200,2000", out.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "the browser wrote no screenshot"
    from PIL import Image

    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20, "the rendered page is (nearly) blank"


def test_token_shading_escapes_text_and_keeps_words_apart():
    from irlalign.report.html import token_spans

    words = token_spans(["good", "<eos>"], [1.0, -0.5])
    assert "</span> <span" in words and "&lt;eos&gt;" in words and "<eos>" not in words
    assert 'title="+1"' in words and "rgba(220,50,50,0.30)" in words  # red, half the largest
    pieces = token_spans(["good", " word"], [1.0, 0.0])
    assert "</span><span" in pieces  # byte-level pieces carry their own space


def test_samples_of_a_resumed_run_show_a_step_logged_twice_once():
    from irlalign.report.html import rows_by_step

    rows = [{"step": s, "completion": c} for s, c in ((2, "c"), (2, "d"), (1, "a"))]
    rows += rows[:2]  # resumed before step 2: the same prompts and seeds, the same rows again
    grouped = {s: [r["completion"] for r in g] for s, g in rows_by_step(rows).items()}
    assert grouped == {1: ["a"], 2: ["c", "d"]}
