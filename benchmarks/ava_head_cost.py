"""AVA's vocabulary work alone: Eq. 12's Q head through the fused pass against the checkpointed
head, on random hidden states of a model's shape, with the three plain products (logits, ∂h, ∂W)
as the floor; interleaved rounds, median times and paired ratios.

    python benchmarks/ava_head_cost.py [--shape smollm2-135m|qwen2.5-0.5b|D,V] [--rows 384]
        [--rounds 7] [--exact]

A whole AVA-p step adds the backbone, which is the same in both paths; the step-level comparison
is `step_cost.py --suite ava` (variants `ava_p` and `ava_p_ckpt`). Here only the head is timed,
so the difference between the two paths is not hidden in a shared machine's step-to-step noise.
Rows: the response actions of a batch (the default 384 is 2 pairs × 128 tokens with the first
quarter prompt). Per row a TD-like objective reads the next row, as AVA's does.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from irlalign.losses.ava_head import Eq12Head, FusedEq12Loss
from irlalign.losses.fused import next_row

SHAPES = {"smollm2-135m": (576, 49152), "qwen2.5-0.5b": (896, 151936)}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="smollm2-135m", help="a model name or 'hidden,vocab'")
    p.add_argument("--rows", type=int, default=384)
    p.add_argument("--chunk", type=int, default=None, help="rows per block (default: 2^24 / V)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--exact", action="store_true", help="with the Boltzmann normaliser (β ≠ 1)")
    return p.parse_args()


def objective(q: torch.Tensor, lse: torch.Tensor | None, nxt: torch.Tensor) -> torch.Tensor:
    """Σ ll + Σ −½(q − 0.9·q_next)²: a likelihood and a TD term, the shape of AVA's."""
    ll = q if lse is None else 2.0 * q - lse
    return ll.sum() - 0.5 * (q - 0.9 * nxt).pow(2).sum()


def variants(h, weight, a, w, chunk: int, exact: bool):
    args = (1.0, 2.0 if exact else 1.0, True, exact)

    def checkpointed():
        qs, ls = [], []
        for lo in range(0, h.shape[0], chunk):
            q, lse = Eq12Head.apply(h[lo : lo + chunk], weight, None, a[lo : lo + chunk],
                                    w[lo : lo + chunk], *args)  # fmt: skip
            qs.append(q)
            ls.append(lse)
        q, lse = torch.cat(qs), (torch.cat(ls) if exact else None)
        objective(q, lse, torch.cat([q[1:], q.new_zeros(1)])).backward()

    def chunk_loss(q, lse, lo, hi):
        k = hi - lo
        return objective(q[:k], None if lse is None else lse[:k], next_row(q, k))

    def fused():
        s, _ = FusedEq12Loss.apply(h, weight, None, a, w, chunk_loss, chunk, args)
        s.backward()

    def products():  # the floor: logits, ∂h and ∂W of every block, nothing else
        with torch.no_grad():
            for lo in range(0, h.shape[0], chunk):
                hb = h[lo : lo + chunk]
                z = hb @ weight.t()
                z @ weight, z.t() @ hb

    return {"three products": products, "checkpointed": checkpointed, "fused": fused}


def main() -> None:
    a = parse_args()
    d, v = SHAPES[a.shape] if a.shape in SHAPES else map(int, a.shape.split(","))
    chunk = a.chunk or max(1, 2**24 // v)
    torch.manual_seed(0)
    h = torch.randn(a.rows, d, requires_grad=True)
    weight = (torch.randn(v, d) * 0.02).requires_grad_()
    acts, w = torch.randint(0, v, (a.rows,)), torch.rand(a.rows, requires_grad=True)
    runs = variants(h, weight, acts, w, chunk, a.exact)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(a.rounds + 1):  # round 0 warms up
        for name, fn in runs.items():
            h.grad = weight.grad = w.grad = None
            t = time.perf_counter()
            fn()
            if r:
                times[name].append(time.perf_counter() - t)
    print(f"shape d={d}, V={v}, {a.rows} rows, blocks of {chunk}, {torch.get_num_threads()} "
          f"threads, {a.rounds} rounds, exact normaliser: {a.exact}\n")  # fmt: skip
    print("| variant | median ms | × checkpointed (paired median) | × three products |")
    print("|---|---:|---:|---:|")
    for name, ts in times.items():
        ck = statistics.median(t / c for t, c in zip(ts, times["checkpointed"], strict=True))
        pr = statistics.median(t / p for t, p in zip(ts, times["three products"], strict=True))
        print(f"| {name} | {1000 * statistics.median(ts):.1f} | {ck:.3f} | {pr:.3f} |")


if __name__ == "__main__":
    main()
