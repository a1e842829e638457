"""Write docs/configuration.md from the config dataclasses (`--check`: fail if it is stale).

python tools/config_reference.py            # regenerate docs/configuration.md
python tools/config_reference.py --check    # exit 1 when the page differs from the code
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from irlalign.config import DataOptions, EvalOptions, LoraOptions, ModelOptions, field_docs
from irlalign.generation.sampling import SamplingConfig
from irlalign.loops.setup import LoopArgs
from irlalign.methods import METHODS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

INTRO = """# Configuration reference

Generated from the config dataclasses by `tools/config_reference.py`; a test fails when this page
and the code disagree. A run config is a YAML mapping with five sections; every key below can
also be set on the command line as `--section.key value` (nested keys as
`--method.sampling.temperature 0.7`). Unknown keys are errors.

| section | what it holds |
|---|---|
| `model` | how to load the model being trained (below) |
| `data` | which rows to train on and how to tokenise them |
| `method` | the method's own options (one table per method below) |
| `training` | `TrainingArguments` keywords (`Trainer` methods); `LoopArgs` (loops, pipelines) |
| `eval` | the synthetic-task evaluation of the final model |

Every method's `training` section also takes `skip_nonfinite_steps` (default 0): a step whose
gradient norm is NaN or infinite stops the run with an error before the weights change, unless
up to this many such steps may be skipped. `Trainer` methods log a NaN loss as NaN
(`logging_nan_inf_filter` defaults to false). It also takes `overwrite_output_dir` (default
false): a folder that holds another run (a different `config.yaml`, checkpoints or `eval.json`)
is refused unless the run resumes it (`resume_from_checkpoint`) or this key empties it first
([the run folder](run-folder.md#protection-and-locking)).

A `Trainer` method's `training` keys are checked when the config resolves: each must be a
`TrainingArguments` field or one of the library's own (`skip_nonfinite_steps`,
`resume_from_checkpoint`, `overwrite_output_dir`), with a value of the field's type.
`max_steps` is a positive number of steps, or -1 (transformers' default) to train for
`num_train_epochs` epochs; `save_steps`, `logging_steps`, `eval_steps`, `num_train_epochs`, the
batch sizes and `gradient_accumulation_steps` must be > 0.
"""


def table(cls: type) -> str:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for doc in field_docs(cls):
        cells = [f"`{doc.name}`", f"`{doc.type}`", f"`{doc.default}`", doc.help]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)


def render() -> str:
    parts = [INTRO]
    sections = (
        ("`model`", ModelOptions, "`model.reference_path` (DPO, RL) names a reference model."),
        ("`model.lora`", LoraOptions, "LoRA through peft; leave `lora` unset for full tuning."),
        ("`data`", DataOptions, ""),
        ("`eval`", EvalOptions, ""),
        ("`training` of the online loops and pipelines", LoopArgs, ""),
        ("`method.sampling`", SamplingConfig, "Sampling settings of every method that generates."),
    )
    for title, cls, note in sections:
        parts.append(f"## {title}\n\n{note + chr(10) + chr(10) if note else ''}{table(cls)}\n")
    parts.append("## `method`, per method\n")
    for name, spec in METHODS.items():
        cls = spec.config_class()
        kind = {"trainer": "a `Trainer` method", "loop": "an online loop"}.get(
            spec.runner_kind, "a pipeline"
        )
        parts.append(f"### `irlalign train {name}` — `{cls.__name__}`, {kind}\n\n{table(cls)}\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        stale = not PAGE.exists() or PAGE.read_text() != text
        if stale:
            print(f"{PAGE} is stale: run python tools/config_reference.py", file=sys.stderr)
        return int(stale)
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text)
    print(f"written: {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
