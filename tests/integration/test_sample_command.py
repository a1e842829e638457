"""`irlalign sample` prints generations of a checkpoint on prompts read from a data file."""

from __future__ import annotations

from irlalign.cli.main import main


def test_sample_prints_each_prompt_and_its_generations(smoke_task_dir, capsys):
    model, data = str(smoke_task_dir / "pi_init"), str(smoke_task_dir / "demos")
    code = main(["sample", "--model", model, "--prompts", data, "-n", "2", "-k", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("--- prompt") == 4 and out.count(">>> ") == 4
    assert "prompt 2, sample 2" in out


def test_sample_reports_a_missing_model_on_one_line(smoke_task_dir, tmp_path, capsys):
    data = str(smoke_task_dir / "demos")
    assert main(["sample", "--model", str(tmp_path / "nope"), "--prompts", data]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("irlalign: error:")
