"""The Python API without training: cheap top-level imports, configs built from keyword
arguments, rows given in memory validated and stored, and `irlalign train` without a preset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

import irlalign
from irlalign.api import build_config, options
from irlalign.cli.main import main
from irlalign.methods import METHODS

ROWS = [
    {"prompt": "<bos> food cat <sep>", "completion": "big run <eos>"},
    {"prompt": "<bos> food dog <sep>", "completion": "tiny run <eos>"},
    {"prompt": "<bos> snow <sep>", "completion": "cold <eos>"},
]
PAIRS = [{"prompt": "<bos> a <sep>", "chosen": "big <eos>", "rejected": "tiny <eos>"}]


@pytest.fixture(autouse=True)
def store(tmp_path, monkeypatch) -> Path:
    """Rows given in memory are stored under `$IRLALIGN_CACHE/datasets`: a fresh one per test."""
    monkeypatch.setenv("IRLALIGN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "datasets"


def test_importing_the_package_and_its_api_imports_no_torch():
    code = (
        "import sys, irlalign\n"
        "irlalign.train, irlalign.resolve, irlalign.build_config, irlalign.RunConfig\n"
        "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_exported_name_and_every_method_class_resolves():
    for name in irlalign.__all__:
        assert getattr(irlalign, name) is not None, name
    for spec in METHODS.values():  # a method added to the table is exported too
        assert getattr(irlalign, spec.config.partition(":")[2]) is spec.config_class()
    assert irlalign.IQLearnTrainer.__name__ == "IQLearnTrainer"
    with pytest.raises(AttributeError, match="no attribute 'NoSuchTrainer'"):
        irlalign.NoSuchTrainer  # noqa: B018


def test_keyword_arguments_sections_and_dotted_keys_build_the_config(store):
    preset = {"training": {"max_steps": 5, "seed": 3}, "method": {"gamma": 0.9}}
    cfg = build_config(
        "iqlearn",
        model="models/m",
        data=ROWS,
        output_dir="runs/x",
        config=preset,
        method={"lam": 0.3},
        training={"max_steps": 2},
        **{"data.max_length": 64},
    )
    assert cfg.model.path == "models/m" and cfg.run_dir == Path("runs/x")
    assert (cfg.method_config.lam, cfg.method_config.gamma) == (0.3, 0.9)
    assert cfg.training["max_steps"] == 2 and cfg.training["seed"] == 3
    assert cfg.data.max_length == 64
    assert Path(cfg.data.train).parent == store
    assert Dataset.load_from_disk(cfg.data.train).to_list() == ROWS
    assert preset == {"training": {"max_steps": 5, "seed": 3}, "method": {"gamma": 0.9}}


def test_the_same_rows_are_stored_once_as_a_dataset_or_a_list(store):
    first = build_config("sft", model="m", data=ROWS, output_dir="o").data.train
    again = build_config("sft", model="m", data=Dataset.from_list(ROWS), output_dir="o")
    assert again.data.train == first and len(list(store.iterdir())) == 1


def test_a_dataset_dict_gives_its_train_and_test_splits():
    splits = DatasetDict({"train": Dataset.from_list(ROWS), "test": Dataset.from_list(ROWS[:1])})
    cfg = build_config("sft", model="m", data=splits, output_dir="o")
    assert len(Dataset.load_from_disk(cfg.data.eval)) == 1
    with pytest.raises(ValueError, match=r"data.train: the given DatasetDict has no split 'dev'"):
        build_config("sft", model="m", data=splits, output_dir="o", **{"data.split": "dev"})


def test_a_bad_row_names_its_index_in_the_given_dataset_and_stores_nothing(store):
    bad = [*ROWS, {"prompt": "<bos> a <sep>", "completion": 7}]
    with pytest.raises(ValueError) as err:
        build_config("sft", model="m", data=bad, output_dir="o")
    assert str(err.value) == (
        "data.train: row 3 of the given dataset: field 'completion': expected a non-empty "
        "string, got int"
    )
    with pytest.raises(ValueError, match=r"^data.eval: row 0 of the given dataset: expected a"):
        build_config("sft", model="m", data=ROWS, eval_data=["text"], output_dir="o")
    assert not store.exists()


def test_rows_the_method_does_not_train_on_are_refused():
    with pytest.raises(ValueError, match="method 'dpo' needs preference data, got prompt_comp"):
        build_config("dpo", model="m", data=ROWS, output_dir="o")
    assert build_config("rloo", model="m", data=PAIRS, output_dir="o")  # prompts of any rows


def test_argument_errors_say_what_to_write():
    with pytest.raises(TypeError, match=r"'lam'; did you mean method=\{'lam': ...\}"):
        build_config("iqlearn", model="m", data=ROWS, output_dir="o", lam=0.1)
    with pytest.raises(ValueError, match=r"^model.path is required \(set it with model=\)$"):
        build_config("sft", data=ROWS, output_dir="o")
    with pytest.raises(ValueError, match="unknown key.*'method': lamda"):
        build_config("iqlearn", model="m", data=ROWS, output_dir="o", method={"lamda": 1})


def test_method_help_lists_every_section_with_defaults(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "iqlearn", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--model_name_or_path" in out
    for section, docs in options("iqlearn").items():
        assert f"\n{section}:\n" in out
        assert all(f"--{section}.{d.name}" in out for d in docs)
    lam = next(line for line in out.splitlines() if line.startswith("  --method.lam "))
    assert "0.1" in lam and "TD-regulariser" in lam
    assert "--training.max_steps" in _help_of("rloo", capsys)  # a loop's own training keys


def _help_of(method: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main(["train", method, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--dataset_name", "d", "--output_dir", "o"],
            "model.path is required (set it with --model_name_or_path or --model.path)",
        ),
        (["--model_name_or_path", "m", "--output_dir", "o"], "data.train is required"),
        (["--model_name_or_path", "m", "--train", "d"], "training.output_dir (the run folder)"),
        (["--max_steps", "3"], "unknown option --max_steps; did you mean --training.max_steps?"),
        (
            ["--model_name_or_path", "m", "--train", "d", "--output_dir", "o", "--method.lam=x"],
            "method.lam: expected a number, got 'x'",
        ),
    ],
)
def test_command_line_without_a_preset_reports_one_line(argv, message, capsys):
    assert main(["train", "iqlearn", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
