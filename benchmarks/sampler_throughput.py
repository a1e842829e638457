"""Generated tokens per second of `HFSampler.sample` against the bare `model.generate` call it
makes, in one process, calls interleaved (sampler, generate, sampler, ...) so that both see the
same machine load; the ratio is the median of per-pair ratios.

Also timed in the same run: "generate + teacher-forced pass", the log-prob method the sampler
replaced (a second full forward over prompt + response), for scale.

    python benchmarks/sampler_throughput.py [--task runs/quickstart/task] [--prompts 64] [--k 4]
        [--max-new-tokens 24] [--reps 15] [--threads 1] [--temperature 1.0]

(`--batch` is another name for `--prompts`, `--steps` for `--reps`: a quick run is
`--batch 8 --k 2 --max-new-tokens 8 --steps 2`.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_cost import add_policy_options, policy_of_shape  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", type=Path, default=Path("runs/quickstart/task"))
    p.add_argument("--prompts", "--batch", type=int, default=64, help="prompts per call")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--reps", "--steps", type=int, default=15, help="timed calls per variant")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--temperature", type=float, default=1.0)
    add_policy_options(p)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from irlalign.generation.sampling import HFSampler, SamplingConfig, _cut
    from irlalign.loops.setup import load_prompts
    from irlalign.modeling.forward import response_logps
    from irlalign.modeling.load import ModelOptions, load_model, load_tokenizer

    if not (a.task / "task.json").exists():
        from irlalign.synthetic.build import build
        from irlalign.synthetic.config import SyntheticConfig

        print(f"building the default synthetic task in {a.task}", file=sys.stderr)
        build(a.task, SyntheticConfig())
    folder = tempfile.TemporaryDirectory(prefix="bench_sampler_policy_")
    path = policy_of_shape(a.task, a.shape, Path(folder.name))
    tok, model = load_tokenizer(path), load_model(ModelOptions(path=path)).eval().to(a.device)
    if a.bf16:
        model = model.to(torch.bfloat16)
    prompts = load_prompts(str(a.task / "demos"), "train", tok)[: a.prompts]
    cfg = SamplingConfig(
        temperature=a.temperature, max_new_tokens=a.max_new_tokens, batch_size=a.prompts
    )
    sampler = HFSampler(model, tok, cfg)

    def sampled() -> int:
        return int(sampler.sample(prompts, a.k).completion_mask.sum())

    @torch.no_grad()
    def generate(teacher_forced: bool = False) -> int:
        side, tok.padding_side = tok.padding_side, "left"
        enc = tok(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
        enc = enc.to(a.device)
        tok.padding_side = side
        out = model.generate(
            **enc,
            do_sample=True,
            temperature=a.temperature,
            top_p=1.0,
            top_k=0,
            max_new_tokens=a.max_new_tokens,
            num_return_sequences=a.k,
            pad_token_id=tok.pad_token_id,
        )
        width = enc["input_ids"].shape[1]
        rows = [_cut(r, tok.eos_token_id, tok.pad_token_id)[0] for r in out[:, width:].tolist()]
        if teacher_forced:  # what the sampler used to do after generate: one more forward
            cm = torch.zeros_like(out)
            for b, r in enumerate(rows):
                cm[b, width : width + len(r)] = 1
            response_logps(model, out, (out != tok.pad_token_id).long() | cm, cm)
        return sum(len(r) for r in rows)

    variants = {
        "HFSampler.sample": sampled,
        "model.generate": generate,
        "generate + teacher-forced pass": lambda: generate(teacher_forced=True),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    tokens: dict[str, list[int]] = {k: [] for k in variants}
    for rep in range(a.reps + 1):  # rep 0 warms up
        for name, fn in variants.items():
            torch.manual_seed(rep)
            start = time.perf_counter()
            n = fn()
            if rep:
                times[name].append(time.perf_counter() - start)
                tokens[name].append(n)
    rate = {k: [n / t for n, t in zip(tokens[k], times[k], strict=True)] for k in variants}
    base = rate["model.generate"]
    print(
        f"\ntorch {torch.__version__}; {a.device}{', bf16' if a.bf16 else ''}, {a.threads} "
        f"thread(s); {'π_init' if a.shape == 'task' else a.shape + ' backbone'} of {a.task}; "
        f"{a.prompts} prompts × k={a.k}, max_new_tokens={a.max_new_tokens}, "
        f"temperature {a.temperature}; median of {a.reps} interleaved calls\n"
    )
    print("| variant | generated tokens/s | × model.generate (paired median) |")
    print("|---|---:|---:|")
    for name in variants:
        ratio = statistics.median(x / y for x, y in zip(rate[name], base, strict=True))
        print(f"| {name} | {statistics.median(rate[name]):,.0f} | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
