"""Two CPU processes under `accelerate launch` run IQLearn, AVA-p (extra heads under DDP) and the
RLOO loop through the CLI, and log the method metrics of all processes; FSDP2 (torch's
`fully_shard`, on gloo: accelerate 1.15 runs FSDP configs on CPU as plain DDP) shards the model,
and the output head that the losses call after the forward gives the unsharded gradients."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("method", "data", "method_cfg", "logged"),
    [
        ("iqlearn", "demos", {"lam": 0.1}, "loss/td"),
        ("ava", "preferences", {"rwt_rescale": True}, "loss/cer"),
        (
            "rloo",
            "demos",
            {"k": 2, "prompts_per_step": 2, "sampling": {"max_new_tokens": 8}},
            "rl/reward",
        ),
    ],
)
def test_two_process_accelerate_launch(method, data, method_cfg, logged, smoke_task_dir, tmp_path):
    launcher = Path(sys.executable).parent / "accelerate"
    if not launcher.exists() and shutil.which("accelerate") is None:
        pytest.skip("accelerate launcher not installed")
    out = tmp_path / "run"
    cfg = {
        "model": {"path": str(smoke_task_dir / "pi_init")},
        "data": {"train": str(smoke_task_dir / data), "max_length": 32},
        "method": method_cfg,
        "training": {
            "output_dir": str(out),
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "logging_steps": 1,
            "save_steps": 2,
            "use_cpu": True,
            "disable_tqdm": True,
            "seed": 0,
        },
    }
    if method == "iqlearn":  # token shares summed over two micro-batches and two processes
        cfg["training"]["gradient_accumulation_steps"] = 2
    if method == "rloo":  # the loop's own `training` section; the gold reward needs the task
        del cfg["training"]["per_device_train_batch_size"]
        cfg["eval"] = {"synthetic_task": str(smoke_task_dir), "samples": 1}
    cfg_file = tmp_path / "iq.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    cmd = [
        str(launcher),
        "launch",
        "--config_file",  # the shipped two-process CPU setup (`--cpu` alone starts one process)
        str(Path(__file__).resolve().parents[2] / "configs" / "accelerate" / "cpu_2proc.yaml"),
        "-m",
        "irlalign.cli.main",
        "train",
        method,
        "--config",
        str(cfg_file),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in logs if logged in r]
    assert [r["step"] for r in steps] == [1, 2]  # rank 0 writes once per step
    if method != "rloo":
        # The method's loss/total is aggregated as transformers aggregates its `loss` (the
        # float32 running sum of each process's micro-batch losses, averaged over processes):
        # they agree to float32 rounding, not to a process's local share (measured before:
        # 1.647 against 2.780 on rank 0).
        for row in steps:
            assert row["loss/total"] == pytest.approx(row["loss"], rel=1e-5)
    assert json.loads((out / "env.json").read_text())["world_size"] == 2
    assert (out / "checkpoints" / "final" / "config.json").exists()
    if method == "ava":  # the heads are saved beside the model folder by rank 0
        assert (out / "checkpoints" / "final" / "irl_heads.safetensors").exists()
    assert json.loads((out / "eval.json").read_text())["final_checkpoint"].endswith("final")


FSDP_WORKER = """
import sys, torch, torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForCausalLM
import irlalign.modeling.forward as forward
from irlalign.modeling.forward import response_logps

library_head = forward.output_head


def shard(model, layout):
    for layer in model.model.layers:
        fully_shard(layer)
    if layout == "accelerate":  # accelerate 1.15's units: embeddings; norm + head kept whole
        fully_shard(model.model.embed_tokens)
        fully_shard([model.model.norm, model.lm_head], reshard_after_forward=False)
    elif layout == "resharded_head":  # the call after the forward must gather it again
        fully_shard(model.lm_head, reshard_after_forward=True)
    fully_shard(model)  # "root": the head is the root's, unsharded until the backward


dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
path, chunk = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)  # one global batch; each process takes its half
vocab = AutoModelForCausalLM.from_pretrained(path).config.vocab_size
ids = torch.randint(3, vocab, (2 * world, 12))
cm = torch.ones_like(ids)
cm[:, :4] = 0
am = torch.ones_like(ids)
rows = slice(2 * rank, 2 * rank + 2)
for layout, head in (("root", library_head), ("resharded_head", library_head),
                     ("accelerate", library_head)):
    forward.output_head = head
    ref, model = (AutoModelForCausalLM.from_pretrained(path) for _ in range(2))
    shard(model, layout)
    logp, _ = response_logps(model, ids[rows], am[rows], cm[rows], chunk_tokens=chunk)
    (-logp.sum()).backward()
    for r in range(world):  # the unsharded model on each half: FSDP averages the gradients
        part = slice(2 * r, 2 * r + 2)
        ref_logp, _ = response_logps(ref, ids[part], am[part], cm[part], chunk_tokens=chunk)
        (-ref_logp.sum() / world).backward()
        if r == rank:
            assert torch.allclose(logp, ref_logp, atol=1e-5), (layout, "log-probabilities")
    for name in ("lm_head.weight", "model.norm.weight", "model.layers.0.self_attn.q_proj.weight"):
        grad = model.get_parameter(name).grad.full_tensor()
        diff = float((grad - ref.get_parameter(name).grad).abs().max())
        assert diff < 1e-5, (layout, name, diff)
    print(rank, layout, "gradients equal", flush=True)
dist.destroy_process_group()
"""


def test_fsdp2_on_cpu_calls_the_head_after_the_forward(smoke_task_dir, tmp_path):
    """The losses run the backbone through the model's forward and call its output head on the
    captured hidden states afterwards, in vocabulary chunks (here 2 rows per chunk). Under
    FSDP2 on two gloo processes the log-probabilities and gradients equal the unsharded model's
    when the head is the root's (unsharded from the forward to the backward) or its own unit
    resharded after the forward (calling it gathers it again). In accelerate 1.15's layout
    (final norm and head one unit kept unsharded) a second call of the head module would crash
    the backward (SIGSEGV on CPU), so `output_head` applies that unit's head through its weight."""
    worker = tmp_path / "fsdp_worker.py"
    worker.write_text(FSDP_WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += [str(worker), str(smoke_task_dir / "pi_init"), "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("gradients equal") == 6
