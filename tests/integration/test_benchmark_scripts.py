"""The benchmark scripts themselves: `step_cost.py` builds the real architectures it names, and
`benchmarks/gpu.sh --dry-run` runs every section end to end on CPU at toy sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def step_cost():
    sys.path.insert(0, str(BENCH))
    try:
        import step_cost
    finally:  # the script also puts its folder on the path, for its variants module
        while str(BENCH) in sys.path:
            sys.path.remove(str(BENCH))
    return step_cost


def decoder_params(cfg, qkv_bias: bool) -> int:
    """Parameters of a Llama/Qwen2-style decoder with tied embeddings, from its config alone."""
    h, inter, vocab = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    head_dim = getattr(cfg, "head_dim", None) or h // cfg.num_attention_heads
    q, kv = cfg.num_attention_heads * head_dim, cfg.num_key_value_heads * head_dim
    attention = h * q + 2 * h * kv + q * h + (q + 2 * kv if qkv_bias else 0)
    layer = attention + 3 * h * inter + 2 * h  # gate/up/down projections, two RMSNorms
    return vocab * h + cfg.num_hidden_layers * layer + h  # + the final norm


@pytest.mark.parametrize(
    ("name", "shape", "qkv_bias"),
    [
        ("smollm2-135m", (576, 1536, 30, 9, 3, 49152), False),
        ("qwen2.5-0.5b", (896, 4864, 24, 14, 2, 151936), True),
    ],
)
def test_model_shapes_are_the_real_architectures(step_cost, name, shape, qkv_bias):
    model = step_cost.build_model(name, device="meta")  # no weights: nothing is computed
    cfg = model.config
    fields = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.vocab_size,
    )
    assert fields == shape
    assert cfg.tie_word_embeddings
    n = sum(p.numel() for p in model.parameters())
    assert n == decoder_params(cfg, qkv_bias)
    print(f"{name}: {n:,} parameters")


def test_smollm2_built_in_shape_equals_the_cached_config(step_cost, monkeypatch):
    real = step_cost._smollm2_config_file()
    if real is None:
        pytest.skip("SmolLM2 has not been converted into the cache")
    from_file = step_cost.model_config("smollm2-135m").to_dict()
    monkeypatch.setattr(step_cost, "_smollm2_config_file", lambda: None)
    built_in = step_cost.model_config("smollm2-135m").to_dict()
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "vocab_size", "tie_word_embeddings", "rope_parameters",
            "max_position_embeddings", "head_dim")  # fmt: skip
    assert {k: built_in[k] for k in keys} == {k: from_file[k] for k in keys}
    assert built_in["rms_norm_eps"] == pytest.approx(from_file["rms_norm_eps"])


def test_model_flops_count_pairs_and_the_reference(step_cost):
    model = step_cost.build_model("tiny", device="meta")
    flops = {v: step_cost.model_flops(model, v, batch=4, seq=16) for v in ("ava_d", "ava_p", "dpo")}
    assert flops["ava_p"] == 2 * flops["ava_d"]  # pairs: twice the sequences
    assert flops["dpo"] == pytest.approx(flops["ava_p"] * 4 / 3)  # + a forward-only reference


def test_cpu_memory_is_the_live_tensor_peak(step_cost):
    import torch

    kept = []

    def two_then_one():  # 4 MiB, 8 MiB live at once, 4 MiB left at the end
        a = torch.ones(2**20)
        kept.append(torch.ones(2**20))
        del a

    peak, end = step_cost.live_peak_bytes(two_then_one)
    assert (peak, end) == (8 * 2**20, 4 * 2**20)
    w = torch.nn.Parameter(torch.zeros(1000))
    opt = torch.optim.AdamW([w])
    w.grad = torch.ones(1000)
    opt.step()
    assert step_cost.state_bytes(opt) == 2 * 4000 + 4  # two moments and the step count


@pytest.mark.slow
def test_gpu_script_dry_run_fills_every_section(smoke_task_dir, tmp_path):
    log = tmp_path / "log"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    script = BENCH / "gpu.sh"
    res = subprocess.run(
        ["bash", str(script), "--dry-run", "--task", str(smoke_task_dir), str(log)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = (log / "summary.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in summary] == [
        "step_cost",
        "rloo_vs_trl",
        "rloo_vs_trl_smollm2",
        "sampler_throughput",
        "sampler_throughput_smollm2",
    ]
    assert all(": exit 0," in line for line in summary), summary
    step_cost_md = (log / "step_cost.md").read_text()
    for variant in ("sft", "iqlearn", "trl_sft", "hf_loss", "bt_rm", "ava_p", "ava_p_norwt",
                    "ava_d", "pt_rm", "dpo", "afd_disc", "trl_dpo", "trl_reward"):  # fmt: skip
        row = next(r for r in step_cost_md.splitlines() if r.startswith(f"| {variant}: "))
        assert float(row.split("|")[3]) > 0, row  # a measured step time, not skipped/failed
    rloo = (log / "rloo_vs_trl.md").read_text()
    assert "| irlalign train_rloo |" in rloo and "| TRL RLOOTrainer |" in rloo
    assert "| HFSampler.sample |" in (log / "sampler_throughput.md").read_text()
    shaped = (log / "rloo_vs_trl_smollm2.md").read_text()  # dry run: the tiny backbone
    assert "policy: tiny backbone, random weights" in shaped and "| TRL RLOOTrainer |" in shaped
    assert "tiny backbone of" in (log / "sampler_throughput_smollm2.md").read_text()
    assert "torch" in (log / "machine.txt").read_text()


@pytest.mark.parametrize("exact", [False, True])
def test_ava_head_cost_times_every_path(exact):
    cmd = [sys.executable, str(BENCH / "ava_head_cost.py"), "--shape", "32,2000", "--rows", "60",
           "--chunk", "6", "--rounds", "1", *(["--exact"] if exact else [])]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [r for r in res.stdout.splitlines() if r.startswith("| ") and "variant" not in r]
    assert [r.split("|")[1].strip() for r in rows] == ["three products", "checkpointed", "fused"]
    assert all(float(r.split("|")[2]) > 0 for r in rows), rows
