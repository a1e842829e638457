"""Step cost of our trainers' losses against each other and against TRL / transformers, on the
same batch: median forward+backward+AdamW step time, peak memory and (on CUDA) MFU per variant,
with ratios to the suite's baseline measured in the same run.

    python benchmarks/step_cost.py [--suite iqlearn|ava|prefs|all] [--models tiny 32k]
        [--seq 128 ...] [--batch 8] [--steps 20] [--warmup 2] [--rounds 1] [--only V ...]
        [--dtype fp32|bf16] [--peak-tflops X] [--isolation auto|process|none] [--describe]

Suites (variants in `step_cost_variants.py`): `iqlearn` (baseline our SFT): our SFT and offline
IQLearn, TRL's SFTTrainer loss, transformers' plain `model(labels=...).loss`; `ava` (baseline a
Bradley–Terry RM): AVA-p with and without reward weights, AVA-p through the checkpointed Eq. 12
head (`fused_head: false`), the Preference Transformer; `prefs` (baseline Bradley–Terry): those
but the checkpointed one, AVA-d on the chosen rows, our DPO, AfD's discriminator, TRL's
DPOTrainer and RewardTrainer losses; `all`: every suite in turn.

Model shapes: `tiny` (vocabulary 64) and `32k` (32k vocabulary, 2 layers) are the quick default;
`smollm2-135m` is SmolLM2-135M-Instruct's architecture and `qwen2.5-0.5b` Qwen2.5-0.5B's, both
randomly initialised (the step cost does not depend on the weights). Token ids are random; pad 0,
EOS 2 (every row ends with EOS), the first quarter of each row is the prompt, row lengths are
drawn in [seq/2, seq].

Precision: `fp32`, or `bf16` = fp32 weights and optimiser with the forward under
`torch.autocast(bfloat16)`, as a `Trainer` with `bf16: true` runs it.

Memory: on CUDA the peak allocated bytes during the steps minus those allocated before them (the
weights, the batch, a frozen reference), so gradients, optimiser states and activations. On CPU the
same quantity for tensors: the optimiser states plus the peak growth of live tensor bytes during
one more step after the timed ones, read from the CPU allocator's events (`torch.profiler` with
`profile_memory`), so what the C library's malloc keeps cached does not count, as CUDA's
caching does not. "fwd+bwd MiB" is the same over the forward and backward of one more step only:
at real shapes AdamW's own temporaries often set the whole step's peak, the same for every
variant, and this column shows what the loss costs. "RSS MiB" (CPU) adds the growth of the
process's peak RSS over the steps, malloc's retention included (each variant then runs in a fresh
subprocess: `--isolation auto` is subprocesses on CPU, one process on CUDA).

MFU (CUDA only): model FLOPs per step / step time / peak FLOP/s, with model FLOPs
= 6·N·T + 12·L·d·S·T for the trained forward+backward, plus 2·N·T + 4·L·d·S·T for a frozen
reference's forward (DPO variants): N the weights of every linear layer (the LM head included,
embedding lookups and norms not), T the tokens per step (sequences × S, padding included), L the
layers, d the hidden size, S the sequence length (attention counted without the causal halving).
The peak is `--peak-tflops`, by default the dense bf16 peak of the GPU when it is an H100/H200
(989) or an A100 (312); other GPUs need the flag.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # TRL maps a one-row dataset
sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_cost_variants import SUITES, VARIANTS, Skip  # noqa: E402

TOY = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
MODELS: dict[str, tuple[str, dict]] = {
    "tiny": ("llama", dict(vocab_size=64, hidden_size=96, intermediate_size=256,
                           num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4)),
    "32k": ("llama", dict(vocab_size=32000, hidden_size=256, intermediate_size=688,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4)),
    # SmolLM2-135M-Instruct's config.json; read from the converted folder when it is cached
    "smollm2-135m": ("llama", dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                   num_hidden_layers=30, num_attention_heads=9,
                                   num_key_value_heads=3, tie_word_embeddings=True,
                                   rope_theta=100000.0, rms_norm_eps=1e-5,
                                   max_position_embeddings=8192)),
    "qwen2.5-0.5b": ("qwen2", dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                                   num_hidden_layers=24, num_attention_heads=14,
                                   num_key_value_heads=2, tie_word_embeddings=True,
                                   rope_theta=1000000.0, rms_norm_eps=1e-6,
                                   max_position_embeddings=32768)),
}  # fmt: skip
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def model_config(name: str, classifier: bool = False):
    """The transformers config of shape `name` (one label when `classifier`); token ids as the
    synthetic batch uses them."""
    from transformers import LlamaConfig, Qwen2Config

    family, values = MODELS[name]
    cls = LlamaConfig if family == "llama" else Qwen2Config
    extra = {"num_labels": 1} if classifier else {}
    cached = _smollm2_config_file() if name == "smollm2-135m" else None
    if cached is not None:
        return cls.from_pretrained(cached.parent, **TOY, **extra)
    return cls(**values, **TOY, **extra)


def _smollm2_config_file() -> Path | None:
    """The real config.json when the SmolLM2 folder has been converted into the cache."""
    from irlalign.modeling.gguf import SMOLLM2_FOLDER
    from irlalign.synthetic.pretrain import cache_root

    path = cache_root() / SMOLLM2_FOLDER / "config.json"
    return path if path.exists() else None


def build_model(name: str, classifier: bool = False, device: str | torch.device = "cpu"):
    """Shape `name`, randomly initialised (seed 0) on `device` ("meta": no weights at all)."""
    from transformers import (
        LlamaForCausalLM,
        LlamaForSequenceClassification,
        Qwen2ForCausalLM,
        Qwen2ForSequenceClassification,
    )

    config = model_config(name, classifier)
    classes = {
        "llama": (LlamaForCausalLM, LlamaForSequenceClassification),
        "qwen2": (Qwen2ForCausalLM, Qwen2ForSequenceClassification),
    }[MODELS[name][0]]
    torch.manual_seed(0)
    with torch.device(device):
        return classes[int(classifier)](config)


def add_policy_options(p: argparse.ArgumentParser) -> None:
    """--shape / --device / --bf16 of the online benchmarks (see `policy_of_shape`)."""
    p.add_argument(
        "--shape",
        default="task",
        choices=["task", *MODELS],
        help="the task's π_init, or this backbone (random weights) with the task's vocabulary",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--bf16", action="store_true", help="bf16 weights (and autocast in training)")


def policy_of_shape(task: Path, shape: str, folder: Path) -> str:
    """A policy folder for the online benchmarks: the task's π_init for shape "task"; otherwise
    shape `shape`'s backbone, randomly initialised, with the task's tokenizer and vocabulary, so
    the task's gold reward still reads its text (the LM head is then the task's small one)."""
    from transformers import AutoModelForCausalLM

    from irlalign.modeling.load import load_tokenizer

    if shape == "task":
        return str(task / "pi_init")
    tok = load_tokenizer(str(task / "pi_init"))
    config = model_config(shape)
    config.vocab_size = len(tok)
    ids = {"pad": tok.pad_token_id, "bos": tok.bos_token_id, "eos": tok.eos_token_id}
    for name, value in ids.items():
        setattr(config, f"{name}_token_id", value)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def matmul_params(model: torch.nn.Module) -> int:
    """N of the FLOP count: every linear layer's weights, the LM head (tied or not) included."""
    linear = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return sum({id(w): w.numel() for w in linear}.values())


def make_batch(vocab: int, batch: int, seq: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (batch, seq), generator=g)
    lengths = torch.randint(seq // 2, seq + 1, (batch,), generator=g)
    attention = (torch.arange(seq)[None] < lengths[:, None]).long()
    ids = ids.masked_fill(attention == 0, 0)
    ids[torch.arange(batch), lengths - 1] = 2  # every response ends with EOS
    completion = attention.clone()
    completion[:, : seq // 4] = 0  # the first quarter is the prompt
    return {"input_ids": ids, "attention_mask": attention, "completion_mask": completion}


def model_flops(model: torch.nn.Module, variant: str, batch: int, seq: int) -> float:
    """Model FLOPs of one step of `variant` (formula in the module docstring)."""
    v = VARIANTS[variant]
    cfg = model.config
    n, layers, d = matmul_params(model), cfg.num_hidden_layers, cfg.hidden_size
    tokens = (2 if v.pairs else 1) * batch * seq
    flops = 6 * n * tokens + 12 * layers * d * seq * tokens
    if v.reference:
        flops += 2 * n * tokens + 4 * layers * d * seq * tokens
    return float(flops)


def measure(name: str, seq: int, variant: str, a) -> dict:
    """One variant's timed steps; {"median_ms", "peak_mib", "mfu"} or {"skipped": reason}."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    v = VARIANTS[variant]
    model = build_model(name, v.classifier, device).train()
    flops = model_flops(model, variant, a.batch, seq)
    data = make_batch(model.config.vocab_size, a.batch, seq)
    data = {k: t.to(device) for k, t in data.items()}
    try:
        step = v.build(model, data, {"device": device})  # may attach heads: optimiser after it
    except Skip as e:
        return {"skipped": str(e)}
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
    dtype = DTYPES[a.dtype]
    autocast = torch.autocast(device, dtype=dtype) if dtype is not None else nullcontext()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    times = []
    for i in range(a.warmup + a.steps):
        sync()
        t = time.perf_counter()
        train_step(step, opt, autocast)
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    median = statistics.median(times)
    rss = None  # the process's peak RSS cannot be reset between variants of one process
    if device == "cpu" and not a.in_process:
        rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    if device == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
        grad_peak = cuda_grad_peak(step, opt, autocast, base_cuda)
    else:  # after the RSS reading: this step runs under the profiler
        peak, grad_peak = cpu_peaks(step, opt, autocast)
    mfu = flops / median / (a.peak_tflops * 1e12) if device == "cuda" else None
    return {"median_ms": 1000 * median, "peak_mib": peak, "grad_peak_mib": grad_peak,
            "rss_mib": rss, "mfu": mfu}  # fmt: skip


def forward_backward(step, autocast=None) -> None:
    """Forward under ``autocast`` (a `Trainer` does the same), backward outside it."""
    with autocast or nullcontext():
        loss = step()
    loss.backward()


def optimiser_step(opt) -> None:
    opt.step()
    opt.zero_grad(set_to_none=True)


def train_step(step, opt, autocast=None) -> None:
    forward_backward(step, autocast)
    optimiser_step(opt)


def cuda_grad_peak(step, opt, autocast, base: int) -> float:
    """Peak MiB of one more forward + backward over ``base`` (its optimiser step follows)."""
    torch.cuda.reset_peak_memory_stats()
    forward_backward(step, autocast)
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    optimiser_step(opt)
    return peak


def cpu_peaks(step, opt, autocast) -> tuple[float, float]:
    """(whole step, forward + backward) peak MiB of one more step, over what was live before the
    first step: the optimiser's state plus the live peak of each part (the optimiser's part
    starting from what forward + backward left, the gradients)."""
    grad_peak, grad_end = live_peak_bytes(lambda: forward_backward(step, autocast))
    opt_peak, _ = live_peak_bytes(lambda: optimiser_step(opt))
    base = state_bytes(opt)
    return (base + max(grad_peak, grad_end + opt_peak)) / 2**20, (base + grad_peak) / 2**20


def state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of the optimiser's state tensors (AdamW's moments, allocated by the first step)."""
    return sum(t.nbytes for s in opt.state.values() for t in s.values() if torch.is_tensor(t))


def live_peak_bytes(fn) -> tuple[int, int]:
    """The peak during ``fn()``, and the value at its end, of the live CPU tensor bytes over those
    live when it starts: the running sum of the allocator's allocation (+) and release (−) events
    that the profiler records, in time order. Exact for tensors, and blind to what malloc caches,
    like CUDA's ``max_memory_allocated``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak, live


def run_in_process(name: str, seq: int, variant: str, a) -> dict:
    try:
        return measure(name, seq, variant, a)
    except torch.cuda.OutOfMemoryError:
        return {"failed": "out of memory"}
    except Exception as e:  # one broken variant must not hide the others' rows
        return {"failed": f"{type(e).__name__}: {e}".splitlines()[0][:200]}
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_in_subprocess(name: str, seq: int, variant: str, a) -> dict:
    cmd = [sys.executable, __file__, "--one", name, str(seq), variant]
    for flag in ("steps", "warmup", "batch", "dtype", "peak_tflops"):
        if getattr(a, flag) is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(a, flag))]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        lines = res.stderr.strip().splitlines() or [f"exit {res.returncode}"]
        return {"failed": lines[-1][:200]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def machine(a) -> str:
    if torch.cuda.is_available():
        where = f"cuda ({torch.cuda.get_device_name(0)}, peak {a.peak_tflops:g} TFLOP/s)"
    else:
        where = f"cpu ({cpu_model()})"
    return (
        f"device: {where}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"dtype {a.dtype}; batch {a.batch}; seq {' '.join(map(str, a.seq))}; "
        f"{a.steps} timed steps after {a.warmup} warm-up; {a.rounds} round(s); "
        f"{'one process' if a.in_process else 'one subprocess per variant'}"
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None or x != x else format(x, spec)


def _ratio(r: dict, base: dict | None, key: str) -> float | None:
    if not base or r.get(key) is None or not base.get(key):
        return None
    return r[key] / base[key]


def print_block(name: str, seq: int, variants: tuple[str, ...], baseline: str, a) -> bool:
    """Measure and print one (model, seq) table; False if any variant failed. Every variant is
    measured once per round (``--rounds``, rounds one after the other, so that a slow spell of a
    shared machine hits every variant of a round), and a row shows the median over rounds of its
    step time and of its paired (same-round) ratios to the baseline."""
    meta = build_model(name, device="meta")
    print(
        f"\n### {name}, seq {seq}: {type(meta).__name__}, "
        f"{sum(p.numel() for p in meta.parameters()) / 1e6:.1f}M parameters\n"
    )
    x = f"×{baseline}"
    print(
        f"| variant | sequences | step ms | {x} time | peak MiB | {x} memory | fwd+bwd MiB "
        f"| {x} fwd+bwd | RSS MiB | {x} RSS | MFU |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    run = run_in_process if a.in_process else run_in_subprocess
    rounds = [{v: run(name, seq, v, a) for v in variants} for _ in range(a.rounds)]
    ok = True
    for v in variants:
        r = combine([rd[v] for rd in rounds], [rd[baseline] for rd in rounds])
        ok &= "failed" not in r
        print(f"| {v}: {VARIANTS[v].label} | {(2 if VARIANTS[v].pairs else 1) * a.batch} | "
              f"{' | '.join(row_cells(r))} |", flush=True)  # fmt: skip
    if a.rounds > 1:
        for v in variants:
            per = [_ratio(rd[v], rd[baseline], "median_ms") for rd in rounds]
            print(f"{v} {x} time per round: {', '.join(_fmt(p, '.3f') for p in per)}")
    return ok


def combine(runs: list[dict], bases: list[dict]) -> dict:
    """One row from a variant's rounds: the median of each measure (step time, the peaks, RSS,
    MFU) and of its per-round ratios to the baseline (``<measure>_ratio``)."""
    bad = next((r for r in runs if "skipped" in r or "failed" in r), None)
    if bad is not None:
        return bad

    def med(xs):
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if xs else None

    keys = ("median_ms", "peak_mib", "grad_peak_mib", "rss_mib", "mfu")
    row = {k: med([r.get(k) for r in runs]) for k in keys}
    for key in keys[:-1]:
        row[f"{key}_ratio"] = med([_ratio(r, b, key) for r, b in zip(runs, bases, strict=True)])
    return row


def row_cells(r: dict) -> tuple[str, ...]:
    if "skipped" in r or "failed" in r:
        what = f"skipped: {r['skipped']}" if "skipped" in r else f"failed: {r['failed']}"
        return (what, *[""] * 8)
    cells = [f"{r['median_ms']:.1f}", _fmt(r["median_ms_ratio"], ".3f")]
    for key in ("peak_mib", "grad_peak_mib", "rss_mib"):
        cells += [_fmt(r[key], ".1f"), _fmt(r[f"{key}_ratio"], ".3f")]
    return (*cells, "—" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%")


def default_peak_tflops() -> float | None:
    if not torch.cuda.is_available():
        return None
    gpu = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in gpu), None)


def describe(names: list[str]) -> None:
    for name in names:
        meta = build_model(name, device="meta")
        src = _smollm2_config_file() if name == "smollm2-135m" else None
        print(
            f"{name}: {type(meta).__name__}, {sum(p.numel() for p in meta.parameters()):,} "
            f"parameters, {matmul_params(meta):,} in linear layers; config "
            f"{src or 'built in (' + MODELS[name][0] + ')'}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", choices=[*SUITES, "all"], default="iqlearn")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=["tiny", "32k"])
    p.add_argument("--seq", nargs="+", type=int, default=[128])
    p.add_argument("--batch", type=int, default=8, help="rows (pairs for pair variants)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), help="these variants of the suite")
    p.add_argument(
        "--rounds", type=int, default=1, help="measure every variant this many times, in turn"
    )
    p.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    p.add_argument("--peak-tflops", type=float, default=None, help="for MFU (CUDA only)")
    p.add_argument("--isolation", choices=("auto", "process", "none"), default="auto")
    p.add_argument("--describe", action="store_true", help="print the shapes, run nothing")
    p.add_argument("--one", nargs=3, metavar=("MODEL", "SEQ", "VARIANT"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.peak_tflops is None:
        a.peak_tflops = default_peak_tflops()
    if torch.cuda.is_available() and a.peak_tflops is None:
        p.error(f"no known peak for {torch.cuda.get_device_name(0)}: pass --peak-tflops")
    on_cuda = torch.cuda.is_available()
    a.in_process = a.isolation == "none" or (a.isolation == "auto" and on_cuda)
    return a


def main() -> None:
    a = parse_args()
    if a.one:
        name, seq, variant = a.one
        print(json.dumps(measure(name, int(seq), variant, a)))
        return
    if a.describe:
        describe(a.models)
        return
    print(machine(a))
    suites = list(SUITES) if a.suite == "all" else [a.suite]
    if a.suite == "all":
        suites.remove("ava")  # its variants but the checkpointed AVA-p are all in prefs
    ok = True
    for suite in suites:
        variants, baseline = SUITES[suite]
        if a.only:  # the baseline is always measured: every ratio needs it
            variants = tuple(v for v in variants if v == baseline or v in a.only)
        print(f"\n## suite {suite} (ratios against {baseline})")
        for name in a.models:
            for seq in a.seq:
                ok &= print_block(name, seq, variants, baseline, a)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
