"""Train rows side by side: a process pool of `workers`, each job started once the jobs it
needs have finished (spawned processes, so each one sets its own torch thread count)."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any


def run_jobs(
    jobs: Sequence[tuple[str, tuple[str, ...], tuple[Any, ...]]],
    fn: Callable[..., Any],
    workers: int,
    announce: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``jobs`` are (key, keys it needs, arguments of ``fn``), in the order to start them;
    returns {key: fn(*arguments)}. A job whose prerequisites never finish is an error."""
    keys = [key for key, _, _ in jobs]
    for key, needs, _ in jobs:
        missing = [n for n in needs if n not in keys]
        if missing:
            raise ValueError(f"job {key!r} needs unknown job(s) {missing}")
    pending, running, done = list(jobs), {}, {}
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        while pending or running:
            for job in list(pending):
                key, needs, args = job
                if len(running) < workers and all(n in done for n in needs):
                    announce(key)
                    running[pool.submit(fn, *args)] = key
                    pending.remove(job)
            if not running:
                raise ValueError(f"jobs {[k for k, _, _ in pending]} wait on each other")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                done[running.pop(future)] = future.result()
    return done
