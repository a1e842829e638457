"""Parts of the judged evaluation and its output: the win rate and its bootstrap interval,
progress bars that stay off outside a terminal, and the quickstart's labelled worker lines."""

from __future__ import annotations

import io

import numpy as np
import pytest

from irlalign.eval.metrics import per_group_means, win_rate


def test_win_rate_counts_ties_half_and_resamples_prompts():
    # 3 prompts x 2 samples: prompt 0 wins both, prompt 1 ties one and loses one, prompt 2 loses
    policy = [2.0, 3.0, 1.0, 0.0, 0.0, 0.0]
    baseline = [1.0, 1.0, 1.0, 1.0, 5.0, 5.0]
    out = win_rate(policy, baseline, 3, resamples=500, seed=1)
    assert out["win_rate"] == pytest.approx((1.0 + 0.25 + 0.0) / 3)
    assert out["tie_rate"] == pytest.approx(1 / 6) and out["n_pairs"] == 6
    assert 0.0 <= out["ci_low"] < out["win_rate"] < out["ci_high"] <= 1.0
    assert out == win_rate(policy, baseline, 3, resamples=500, seed=1)  # seeded


def test_win_rate_of_a_sure_winner_and_bad_shapes():
    out = win_rate(np.ones(8), np.zeros(8), 4)
    assert (out["win_rate"], out["ci_low"], out["ci_high"]) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="length mismatch"):
        win_rate([1.0, 2.0], [1.0], 1)
    with pytest.raises(ValueError, match="do not split into 4 equal groups"):
        per_group_means(np.ones(6), 4)


def test_progress_bar_is_off_outside_a_terminal(capsys, monkeypatch):
    from irlalign.generation.progress import progress_bar

    with progress_bar(10, "sampling") as bar:  # pytest's stderr is no terminal
        bar.update(10)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("TQDM_DISABLE", "1")
    with progress_bar(10, "sampling", enabled=True) as bar:
        bar.update(10)
    assert capsys.readouterr().err == ""
    monkeypatch.delenv("TQDM_DISABLE")
    with progress_bar(10, "sampling", enabled=True) as bar:
        bar.update(10)
    assert "sampling" in capsys.readouterr().err


def test_worker_lines_carry_the_row_label(monkeypatch):
    from irlalign.demo import logs

    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(logs.sys, "stdout", out)
    monkeypatch.setattr(logs.sys, "stderr", err)
    logs.label_output("sft")
    print("step 1", end="")
    print(" done\nstep 2")
    logs.sys.stderr.write("a warning\n")
    logs.label_output("rm_reward")  # the next row in the same worker: same streams, new label
    print("step 1")
    assert not logs.sys.stdout.isatty()
    assert out.getvalue() == "[sft] step 1 done\n[sft] step 2\n[rm_reward] step 1\n"
    assert err.getvalue() == "[sft] a warning\n"
