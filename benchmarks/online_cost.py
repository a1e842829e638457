"""Where the time of one online step goes: a per-phase breakdown of (a) one RLOO step and (b) one
online IQLearn step next to one offline IQLearn step at the same expert batch.

Phases are measured by wrapping the library's functions at runtime (nothing in the library is
changed, so the normal path carries no timing code): each wrapped call's wall time, minus the
time of wrapped calls nested inside it, goes to its phase; ``torch.cuda.synchronize`` brackets
every phase on CUDA. Whatever a step spends outside the wrapped calls is the "rest" row
(advantages, scheduler, logging, the Trainer's own loop).

Phases: generation (`irlalign.generation.sampling.sample_tokens`, or `model.generate`);
teacher-forced policy forward (the gradient pass, on the expert batch and on the policy's own
samples); reference log-probs; reward scoring; loss + backward; optimiser (gradient clipping and
the optimizer step); rows (tokenising, padding, collating, decoding: the Python per-row work
around generation and in the data collator).

    python benchmarks/online_cost.py [--task runs/quickstart/task]
        [--model-path runs/quickstart/sft/checkpoints/final] [--steps 8] [--warmup 2]
        [--threads 1] [--only rloo|iqlearn] [--clock wall|process] [--batch N]
        [--max-new-tokens T] [--sample-every 1 4]

RLOO uses `configs/synthetic/rloo.yaml` (gold dense reward, 32 prompts × k = 8, 24 new
tokens), IQLearn `configs/synthetic/iqlearn.yaml` and `iqlearn_online.yaml` (expert batch 32,
online α = 0.5: 16 policy samples of at most 24 tokens), each with the model replaced by
``--model-path``. A model whose tokenizer is not the task's gets the gold reward's sequence
score on the last token (`reward_mode: terminal`): the dense reward is defined on task tokens.
A quick run: `--steps 1 --warmup 1 --batch 4 --max-new-tokens 8`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]

GENERATION = "generation"
FORWARD = "teacher-forced policy forward"
FORWARD_EXPERT = "teacher-forced forward: expert batch"
FORWARD_SAMPLES = "teacher-forced forward: policy samples"
REFERENCE = "reference log-probs"
REWARD = "reward scoring"
LOSS = "loss + backward"
OPTIMISER = "optimiser (clip + step)"
ROWS = "rows: tokenise / pad / collate"
REST = "rest (advantages, scheduler, logging, loop)"


def _restorer(owner: Any, attr: str) -> Callable[[], None]:
    """Undo a patch of ``owner.attr``: put back its own value, or drop the patch when the
    attribute was inherited (a class-level copy would outlive the run)."""
    own = vars(owner).get(attr, _MISSING) if isinstance(owner, type) else getattr(owner, attr)
    if own is _MISSING:
        return lambda: delattr(owner, attr)
    return lambda: setattr(owner, attr, own)


_MISSING = object()


TIMERS = {"wall": time.perf_counter, "process": time.process_time}


class PhaseClock:
    """Exclusive wall time per phase: a nested phase's time is taken out of its parent's."""

    def __init__(self, timer: Callable[[], float] = time.perf_counter) -> None:
        self.timer = timer
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[list[float]] = []
        self._cuda = torch.cuda.is_available()
        self.steps = 0
        self.started: float | None = None
        self.ended: float | None = None
        self._undo: list[Callable[[], None]] = []

    def _sync(self) -> None:
        if self._cuda:
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._sync()
        start = self.timer()
        self._stack.append([0.0])
        try:
            yield
        finally:
            self._sync()
            elapsed = self.timer() - start
            (nested,) = self._stack.pop()
            self.totals[name] += elapsed - nested
            if self._stack:
                self._stack[-1][0] += elapsed

    def wrap(self, owner: Any, attr: str, name: str | Callable[[], str]) -> None:
        """Replace ``owner.attr`` by a timed call (``name`` may be chosen at call time)."""
        original = getattr(owner, attr)
        clock = self

        def timed(*args, **kwargs):
            with clock.phase(name() if callable(name) else name):
                return original(*args, **kwargs)

        self._undo.append(_restorer(owner, attr))
        setattr(owner, attr, timed)

    def step_start(self, warmup: int) -> None:
        """Called at the start of every step: timing starts after ``warmup`` steps."""
        if self.steps == warmup:
            self.totals.clear()
            self._sync()
            self.started = self.timer()
        self.steps += 1

    def step_end(self) -> None:
        self._sync()
        self.ended = self.timer()

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def per_step(self, warmup: int) -> dict[str, float]:
        """ms per timed step of each phase, with the unaccounted rest."""
        if self.started is None or self.ended is None or self.steps <= warmup:
            raise SystemExit("no timed step: raise --steps")
        n = self.steps - warmup
        total = (self.ended - self.started) * 1000 / n
        out = {k: v * 1000 / n for k, v in self.totals.items()}
        out[REST] = total - sum(v for k, v in out.items() if k != REST)
        out["total"] = total
        return out


def _step_marks(clock: PhaseClock, owner: Any, start: str, end: str, warmup: int) -> None:
    """A step starts when ``owner.start`` is called and ends when ``owner.end`` returns."""
    first, last = getattr(owner, start), getattr(owner, end)

    def started(*args, **kwargs):
        clock.step_start(warmup)
        return first(*args, **kwargs)

    def ended(*args, **kwargs):
        out = last(*args, **kwargs)
        clock.step_end()
        return out

    clock._undo += [_restorer(owner, start), _restorer(owner, end)]
    setattr(owner, start, started)
    setattr(owner, end, ended)


def _common_wraps(clock: PhaseClock) -> None:
    import accelerate
    from transformers.generation.utils import GenerationMixin

    clock.wrap(GenerationMixin, "generate", GENERATION)
    # The library's own decoding loop, where it has one (called by name from these modules).
    from irlalign.generation import continuations, sampling

    for module in (sampling, continuations):
        if hasattr(module, "sample_tokens"):
            clock.wrap(module, "sample_tokens", GENERATION)
    clock.wrap(accelerate.Accelerator, "clip_grad_norm_", OPTIMISER)
    clock.wrap(torch.optim.AdamW, "step", OPTIMISER)  # before any optimizer is built


def _preset(name: str, a, out: Path) -> dict:
    raw = yaml.safe_load((ROOT / "configs" / "synthetic" / f"{name}.yaml").read_text())
    raw["model"]["path"] = str(a.model_path)
    raw["data"]["train"] = str(a.task / "demos")
    raw["eval"] = {"synthetic_task": str(a.task)}
    raw["training"].update(
        output_dir=str(out),
        max_steps=a.warmup + a.steps,
        logging_steps=1,
        save_steps=10**6,
        disable_tqdm=True,
        report_to="none",
    )
    raw["training"].pop("eval_steps", None)
    if a.batch is not None:  # a quick run: fewer rows than the presets'
        if name == "rloo":
            raw["method"]["prompts_per_step"] = a.batch
        else:
            raw["training"]["per_device_train_batch_size"] = a.batch
    if a.max_new_tokens is not None:
        if name == "rloo":
            raw["method"]["sampling"]["max_new_tokens"] = a.max_new_tokens
        else:
            raw["method"]["max_new_tokens"] = a.max_new_tokens
    # A short run cannot hold the presets' schedules; the schedule does not change the cost.
    raw["training"].pop("lr_scheduler_kwargs", None)
    raw["training"].update(lr_scheduler_type="constant", warmup_steps=0)
    return raw


def _same_tokenizer(a) -> bool:
    from irlalign.modeling.load import load_tokenizer

    mine, task = load_tokenizer(str(a.model_path)), load_tokenizer(str(a.task / "pi_init"))
    return mine.get_vocab() == task.get_vocab()


def run_rloo(a, out: Path) -> dict[str, float]:
    from irlalign.loops import rloo
    from irlalign.methods import resolve, train

    raw = _preset("rloo", a, out)
    if not _same_tokenizer(a):
        raw["method"]["reward_mode"] = "terminal"
        print("model tokenizer differs from the task's: RLOO on terminal gold scores", flush=True)
    clock = PhaseClock(TIMERS[a.clock])
    _common_wraps(clock)
    clock.wrap(rloo, "rollout", ROWS)  # the sampler's own work around `generate`
    clock.wrap(rloo, "policy_token_rewards", REWARD)
    clock.wrap(rloo, "reference_pass", REFERENCE)
    clock.wrap(rloo, "response_logps", FORWARD)
    clock.wrap(rloo, "_updates", LOSS)
    _step_marks(clock, rloo, "rollout", "end_step", a.warmup)
    try:
        train(resolve("rloo", raw))
    finally:
        clock.restore()
    return clock.per_step(a.warmup)


def _trainer_step_marks(clock: PhaseClock, warmup: int) -> None:
    """A Trainer step runs from one `training_step` call to the next (the optimizer step, the
    logging and the next batch's fetch and collation included); the last one ends after its
    logging."""
    from transformers import Trainer

    first, closing = Trainer.training_step, Trainer._maybe_log_save_evaluate

    def marked(self, *args, **kwargs):
        if clock.steps:
            clock.step_end()
        clock.step_start(warmup)
        return first(self, *args, **kwargs)

    def logged(self, *args, **kwargs):
        with clock.phase(REST):
            out = closing(self, *args, **kwargs)
        if self.state.global_step >= self.state.max_steps:
            clock.step_end()
        return out

    clock._undo += [_restorer(Trainer, n) for n in ("training_step", "_maybe_log_save_evaluate")]
    Trainer.training_step, Trainer._maybe_log_save_evaluate = marked, logged


def run_iqlearn(a, out: Path, online: bool, sample_every: int = 1) -> dict[str, float]:
    from irlalign.data import collate
    from irlalign.methods import resolve, train
    from irlalign.trainers import iqlearn

    raw = _preset("iqlearn_online" if online else "iqlearn", a, out)
    raw["eval"] = {}  # no synthetic evaluation after training: not part of a step
    if online:
        raw["method"]["sample_every"] = sample_every
    clock = PhaseClock(TIMERS[a.clock])
    _common_wraps(clock)
    side = {"samples": False}

    def forward_name() -> str:
        return FORWARD_SAMPLES if side["samples"] else FORWARD_EXPERT

    trainer = iqlearn.IQLearnTrainer
    clock.wrap(trainer, "_terms", forward_name)
    clock.wrap(collate.CompletionCollator, "__call__", ROWS)
    clock.wrap(iqlearn, "batch_prompts", ROWS)
    clock.wrap(iqlearn, "sample_continuations", ROWS)
    original = trainer._online_loss

    def online_loss(*args, **kwargs):
        side["samples"] = True
        try:
            return original(*args, **kwargs)
        finally:
            side["samples"] = False

    clock._undo.append(_restorer(trainer, "_online_loss"))
    trainer._online_loss = online_loss
    _trainer_step_marks(clock, a.warmup)
    clock.wrap(trainer, "training_step", LOSS)  # after the marks: it wraps the marked call
    try:
        train(resolve("iqlearn", raw))
    finally:
        clock.restore()
    # The end of the last step is marked after its logging, the others at the next step's start.
    return clock.per_step(a.warmup)


def table(title: str, columns: dict[str, dict[str, float]]) -> None:
    names = list(columns)
    phases = [
        GENERATION,
        FORWARD,
        FORWARD_EXPERT,
        FORWARD_SAMPLES,
        REFERENCE,
        REWARD,
        LOSS,
        OPTIMISER,
        ROWS,
        REST,
    ]
    phases = [p for p in phases if any(p in c for c in columns.values())]
    print(f"\n{title}\n")
    print("| phase | " + " | ".join(f"{n} ms/step | share" for n in names) + " |")
    print("|---|" + "---:|---:|" * len(names))
    for p in [*phases, "total"]:
        cells = []
        for n in names:
            v, total = columns[n].get(p, 0.0), columns[n]["total"]
            cells.append(f"{v:.1f} | {100 * v / total:.0f} %")
        label = f"**{p}**" if p == "total" else p
        print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", type=Path, default=Path("runs/quickstart/task"))
    p.add_argument("--model-path", type=Path, default=Path("runs/quickstart/sft/checkpoints/final"))
    p.add_argument("--steps", type=int, default=8, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", choices=("rloo", "iqlearn"))
    p.add_argument("--batch", type=int, help="RLOO prompts per step / IQLearn expert batch")
    p.add_argument("--max-new-tokens", type=int, help="sampling budget (default: the presets')")
    p.add_argument(
        "--sample-every",
        type=int,
        nargs="+",
        default=[1],
        help="online IQLearn's sample_every values, one column each",
    )
    p.add_argument(
        "--clock",
        choices=sorted(TIMERS),
        default="wall",
        help="wall: time.perf_counter; process: this process's CPU time (time.process_time), "
        "steadier on a shared CPU machine (not for CUDA, whose kernels it does not count)",
    )
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    a.task, a.model_path = a.task.resolve(), a.model_path.resolve()
    if not (a.task / "task.json").exists():
        raise SystemExit(f"{a.task}: no task.json (irlalign synthetic build --out {a.task})")
    from irlalign.loops import evaluation

    # The loops' synthetic evaluation (at the start and the end) is not part of a step.
    evaluation.evaluate_policy = lambda *args, **kwargs: {}
    import transformers

    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}; "
        f"{'CUDA' if torch.cuda.is_available() else 'CPU'}, {a.threads} thread(s); model "
        f"{a.model_path}; {a.steps} timed steps after {a.warmup} warm-up; {a.clock} clock",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="online_cost_") as tmp:
        if a.only in (None, "rloo"):
            rl = run_rloo(a, Path(tmp) / "rloo")
            rows = f"{a.batch or 32} prompts × k = 8"
            table(f"RLOO step, {rows} (configs/synthetic/rloo.yaml)", {"RLOO": rl})
        if a.only in (None, "iqlearn"):
            columns = {"offline": run_iqlearn(a, Path(tmp) / "iq_off", online=False)}
            for n in a.sample_every:
                name = "online" if n == 1 else f"online, sample_every {n}"
                columns[name] = run_iqlearn(
                    a, Path(tmp) / f"iq_on_{n}", online=True, sample_every=n
                )
            table(
                f"IQLearn step at expert batch {a.batch or 32} (configs/synthetic/iqlearn*.yaml)",
                columns,
            )
            base = columns["offline"]["total"]
            for name, col in list(columns.items())[1:]:
                print(f"\n{name} / offline IQLearn step: {col['total'] / base:.2f}×")


if __name__ == "__main__":
    main()
