"""Size caps, lint, the presets and the generated configuration reference."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from irlalign.methods import METHODS, resolve

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "irlalign"


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _py_files():
    return sorted(SRC.rglob("*.py"))


def test_file_size_caps():
    too_big = []
    for path in _py_files():
        lines = len(path.read_text().splitlines())
        runners = {"trainers", "loops", "pipelines"}
        cap = 400 if runners & set(path.parts) else 600
        if lines > cap:
            too_big.append(f"{path.relative_to(ROOT)}: {lines} > {cap}")
    assert not too_big, too_big


def test_function_size_caps():
    too_long = []
    for path in _py_files():
        tree = ast.parse(path.read_text())
        for fn in _functions(tree):
            length = fn.end_lineno - fn.lineno + 1
            cap = 80
            if "losses" in path.parts and not fn.name.startswith("_"):
                cap = 40
            if "trainers" in path.parts and fn.name == "__init__":
                cap = 40
            if length > cap:
                too_long.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}: {length} > {cap}")
    assert not too_long, too_long


def test_losses_import_only_torch():
    allowed = {"torch", "__future__", "math", "typing", "collections", "dataclasses", "irlalign"}
    offenders = []
    for path in sorted((SRC / "losses").rglob("*.py")) if (SRC / "losses").exists() else []:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                inner = top == "irlalign" and not name.startswith("irlalign.losses")
                if top not in allowed or inner:
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders, offenders


def test_synthetic_presets_are_valid_configs():
    from irlalign.synthetic.config import SyntheticConfig

    for name in ("benchmark.yaml", "smoke.yaml"):
        SyntheticConfig.from_file(ROOT / "configs" / "synthetic" / name)
    assert SyntheticConfig.from_file(ROOT / "configs/synthetic/benchmark.yaml") == SyntheticConfig()


def test_ruff_is_clean():
    beside = Path(sys.executable).parent / "ruff"  # the venv's own ruff, pinned by the dev extra
    ruff = str(beside) if beside.exists() else shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed")
    dirs = [d for d in ("src", "tests", "benchmarks") if (ROOT / d).is_dir()]
    out = subprocess.run([ruff, "check", *dirs], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_training_preset_resolves_into_its_config_objects(tmp_path):
    """Each preset under configs/synthetic/ (but the task builders: smoke, benchmark*) resolves
    for its method: every key is known and every value passes the dataclasses' checks."""
    from irlalign.config import RunConfig
    from irlalign.demo.plan import preset_config

    task_builders = {"benchmark", "smoke"}
    names = sorted(p.stem for p in (ROOT / "configs" / "synthetic").glob("*.yaml"))
    assert len(names) - len(task_builders) >= 11
    for name in names:
        if name in task_builders or name.startswith("benchmark_"):
            continue
        method_name, raw = preset_config(
            name, task_dir=tmp_path / "task", runs_root=tmp_path, output_dir=tmp_path, seed=0
        )
        cfg = resolve(method_name, raw)
        assert isinstance(cfg, RunConfig) and cfg.method_name == method_name, name
        assert type(cfg.method_config).__name__.lower().startswith(method_name[:3]), name


def test_quickstart_rows_resolve_and_name_existing_prerequisites(tmp_path):
    from irlalign.demo.plan import ROWS, job_order, row_config

    order = [row.folder for row in job_order()]
    assert sorted(order) == sorted(row.folder for row in ROWS) and len(set(order)) == len(order)
    for row in job_order():
        assert all(n in order and order.index(n) < order.index(row.folder) for n in row.needs)
        method_name, raw = row_config(row, tmp_path, seed=3, samples=2)
        cfg = resolve(method_name, raw)
        assert cfg.run_dir == tmp_path / row.folder
        assert cfg.seed == 3 and cfg.eval.seed == 3 and cfg.eval.samples == 2
        assert cfg.data.train.startswith(str(tmp_path / "task"))


def test_cli_lists_every_method_of_the_table():
    from irlalign.cli.main import build_parser

    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert all(name in help_text for name in METHODS)


def test_configuration_reference_is_generated_from_the_code():
    """docs/configuration.md is what tools/config_reference.py writes today, so it names every
    field of every config dataclass with its current default."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import config_reference
    finally:
        sys.path.pop(0)
    text = config_reference.render()
    assert (ROOT / "docs" / "configuration.md").read_text() == text, (
        "docs/configuration.md is stale: run python tools/config_reference.py"
    )
    from irlalign.config import field_docs

    for spec in METHODS.values():
        for doc in field_docs(spec.config_class()):
            assert f"| `{doc.name}` |" in text, (spec.config, doc.name)


def test_pipeline_rl_phases_use_the_rl_presets_settings():
    """AfD's RL extension, each adversarial round and each FRFT round train with the same
    optimiser settings and batch as the RL presets (configs/synthetic/rloo.yaml, ppo.yaml):
    one source of RL defaults. The RLOO preset's final decay is left out: the phases are
    shorter than it, and a decay over the whole phase would end learning early. Only the reward
    side (reward model, its normalisation, the KL coefficient against a learned reward) and the
    step budget are the pipeline's own."""
    own = {"reward_model", "reward_mode", "reward_norm", "kl_coef", "sampling"}
    synthetic = ROOT / "configs" / "synthetic"
    phases = (("afd", "rl"), ("adversarial", "rl"), ("frft", "policy_trainer"), ("demo_rl", "rl"))
    for name, rl_key in phases:
        method = yaml.safe_load((synthetic / f"{name}.yaml").read_text())["method"]
        rl_name = method.get(rl_key) if method.get(rl_key) not in (None, "none") else "rloo"
        rl = yaml.safe_load((synthetic / f"{rl_name}.yaml").read_text())
        for key, value in rl["method"].items():
            if key not in own:
                assert method["rl_method"].get(key) == value, (name, key)
        for key in ("learning_rate", "lr_scheduler_type", "warmup_steps", "max_grad_norm"):
            want = rl["training"].get(key)
            if want == "warmup_stable_decay":  # RL phases are shorter than the preset's decay
                want = "constant_with_warmup"
            assert method["rl_training"].get(key) == want, (name, key)


def test_demo_rl_preset_trains_its_phases_as_their_own_presets():
    """configs/synthetic/demo_rl.yaml's SFT phase is AfD's, and its implicit reward phase is the
    IQLearn preset (method and optimiser), so its routes compare with those runs."""
    synthetic = ROOT / "configs" / "synthetic"
    load = lambda name: yaml.safe_load((synthetic / f"{name}.yaml").read_text())  # noqa: E731
    demo, afd, iqlearn = load("demo_rl")["method"], load("afd")["method"], load("iqlearn")
    assert demo["sft_training"] == afd["sft_training"]
    assert demo["reward_method"] == {k: iqlearn["method"][k] for k in demo["reward_method"]}
    shared = {"logging_steps", "save_steps", "output_dir", "seed", "use_cpu"}
    assert demo["reward_training"] == {
        k: v for k, v in iqlearn["training"].items() if k not in shared
    }
