"""Training from Python in one call, without a YAML file.

    import irlalign
    results = irlalign.train(
        "iqlearn",
        model="runs/task/pi_init",
        data=[{"prompt": "...", "completion": "..."}, ...],  # or a Dataset, DatasetDict, path
        output_dir="runs/iq",
        method={"lam": 0.1},
        training={"max_steps": 10},
    )

`build_config` turns the keyword arguments into the same raw mapping a YAML preset holds and
resolves it with `irlalign.methods.resolve`, so every key, check and error is the config's:
`model`, `data`, `output_dir` are shortcuts for `model.path`, `data.train` and
`training.output_dir`; a section name takes a mapping (`training={"max_steps": 10}`, merged
into the section) and a dotted name one value (`**{"method.sampling.temperature": 0.7}`).

Rows given in memory (a list of dicts, a `datasets.Dataset`, a `DatasetDict` whose `test` split
becomes the held-out set) are validated like a file's rows, with errors naming
`data.train: row N of the given dataset`, and stored once under
`$IRLALIGN_CACHE/datasets/<digest>`: `config.yaml` then names a folder a rerun can read.

This module imports neither torch nor `datasets` until it trains or sees a dataset.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from irlalign.config import (
    SECTIONS,
    DataOptions,
    EvalOptions,
    FieldDoc,
    ModelOptions,
    RunConfig,
    field_docs,
    set_nested,
)
from irlalign.methods import resolve, spec_of
from irlalign.methods import train as train_config

# Stands in for rows given in memory while the config resolves (before they are stored).
PENDING = "(the given dataset)"
# Which argument of `train` sets a required key: named when the key is missing.
ARGUMENT_FOR = {"model.path": "model=", "data.train": "data=", "training.output_dir": "output_dir="}


def train(
    method: str | RunConfig,
    /,
    *,
    model: str | os.PathLike | Mapping[str, Any] | None = None,
    data: Any = None,
    eval_data: Any = None,
    output_dir: str | os.PathLike | None = None,
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train one method end to end and return its results (what the run's `eval.json` holds).

    - ``method`` (positional): a method name (`irlalign.methods.METHODS`), or an already
      resolved `RunConfig` (then nothing else is taken); `method=` is the `method` section.
    - ``model``: a model folder or `hub:<org>/<name>`, or the whole `model` section.
    - ``data``: the training rows: a path (a file, a `save_to_disk` folder, `hub:<org>/<name>`),
      a list of dicts, a `datasets.Dataset`, a `DatasetDict` (its `train` split; its `test`
      split becomes the held-out set unless ``eval_data`` is given), or the whole `data`
      section (whose `train` / `eval` may be any of these).
    - ``eval_data``: held-out rows, in the same forms. ``output_dir``: the run folder.
    - ``config``: a YAML preset's path, or a raw mapping, to start from.
    - ``overrides``: `section={...}` (merged into the section) or `**{"section.key": value}`.
    """
    if isinstance(method, RunConfig):
        given = [model, data, eval_data, output_dir, config, *overrides.values()]
        if any(v is not None for v in given):
            raise TypeError("train(RunConfig) takes no further arguments; the config holds them")
        return train_config(method)
    cfg = build_config(
        method,
        model=model,
        data=data,
        eval_data=eval_data,
        output_dir=output_dir,
        config=config,
        **overrides,
    )
    with _one_warning_per_dataset():
        return train_config(cfg)


def build_config(
    method: str,
    /,
    *,
    model: str | os.PathLike | Mapping[str, Any] | None = None,
    data: Any = None,
    eval_data: Any = None,
    output_dir: str | os.PathLike | None = None,
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    **overrides: Any,
) -> RunConfig:
    """The `RunConfig` that `train` runs (same arguments): the config is checked first, then
    rows given in memory are validated and stored. Nothing is loaded or trained."""
    raw = raw_config(method, model, data, eval_data, output_dir, config, overrides)
    given = {k: raw["data"].get(k) for k in ("train", "eval")}
    in_memory = {k: v for k, v in given.items() if _is_in_memory(v)}
    for key in in_memory:
        raw["data"][key] = PENDING
    cfg = _with_hint(lambda: resolve(method, raw), ARGUMENT_FOR)
    if in_memory:
        _store_all(method, cfg, in_memory)
    return cfg


def _store_all(method: str, cfg: RunConfig, in_memory: dict[str, Any]) -> None:
    """Check every set of rows given in memory, then store them and point the config at them."""
    from irlalign.data.loading import store_dataset

    tables = {key: _checked_table(method, rows, f"data.{key}") for key, rows in in_memory.items()}
    for key, table in tables.items():
        setattr(cfg.data, key, store_dataset(table, dataset_store()))


def raw_config(
    method: str,
    model: Any = None,
    data: Any = None,
    eval_data: Any = None,
    output_dir: Any = None,
    config: Any = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The raw mapping `build_config` resolves: ``config`` (a YAML path or a mapping), then the
    section and dotted ``overrides``, then the shortcuts; in-memory rows are left in place."""
    spec_of(method)  # an unknown method is the first error
    raw = read_config(config) if isinstance(config, str | os.PathLike) else dict(config or {})
    # A copy of each section: the caller's mappings are never changed.
    raw = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    for name, value in (overrides or {}).items():
        _apply_override(method, raw, name, value)
    if isinstance(model, Mapping):
        raw["model"] = _merged(raw.get("model"), model)
    elif model is not None:
        set_nested(raw.setdefault("model", {}), "path", os.fspath(model))
    _set_data(raw, data, eval_data)
    if output_dir is not None:
        set_nested(raw.setdefault("training", {}), "output_dir", os.fspath(output_dir))
    return raw


def _apply_override(method: str, raw: dict[str, Any], name: str, value: Any) -> None:
    section, _, key = name.partition(".")
    if section not in SECTIONS:
        raise TypeError(f"train() got an unexpected keyword argument {name!r}{_hint(method, name)}")
    if key:
        raw.setdefault(section, {})
        set_nested(raw[section], key, value)
    elif isinstance(value, Mapping):
        raw[section] = _merged(raw.get(section), value)
    else:
        got = type(value).__name__
        raise TypeError(f"{section}= takes a mapping of the section's keys, got {got}")


def _hint(method: str, name: str) -> str:
    """Where a bare key belongs: `lam` -> `method={'lam': ...}`."""
    homes = sections_with(method, name)
    if not homes:
        return f"; sections are {', '.join(SECTIONS)} (e.g. training={{'max_steps': 10}})"
    return "; did you mean " + " or ".join(f"{s}={{{name!r}: ...}}" for s in homes) + "?"


def _merged(base: Any, update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``, nested mappings merged key by key."""
    out = dict(base) if isinstance(base, Mapping) else {}
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _set_data(raw: dict[str, Any], data: Any, eval_data: Any) -> None:
    section = raw["data"] = dict(raw.get("data") or {})
    if isinstance(data, Mapping) and not _is_dataset_dict(data):
        section.update(data)
    elif data is not None:
        section["train"] = os.fspath(data) if isinstance(data, os.PathLike) else data
    if eval_data is not None:
        section["eval"] = os.fspath(eval_data) if isinstance(eval_data, os.PathLike) else eval_data
    for key, split in (("train", section.get("split", "train")), ("eval", None)):
        if _is_dataset_dict(section.get(key)):
            _split_dataset_dict(section, key, split)


def _split_dataset_dict(section: dict[str, Any], key: str, split: str | None) -> None:
    """A `DatasetDict` given as `data.train` gives its `split` (and, when no held-out set is
    given, its `eval_split` as `data.eval`); given as `data.eval`, its `eval_split`."""
    splits = section[key]
    eval_split = section.get("eval_split", "test")
    wanted = split if key == "train" else eval_split
    if wanted not in splits:
        raise ValueError(
            f"data.{key}: the given DatasetDict has no split {wanted!r}; available splits: "
            f"{sorted(splits)}"
        )
    section[key] = splits[wanted]
    if key == "train" and section.get("eval") is None and eval_split in splits:
        section["eval"] = splits[eval_split]


def _is_dataset_dict(value: Any) -> bool:
    datasets = sys.modules.get("datasets")  # not imported: the value cannot be one of its types
    return datasets is not None and isinstance(value, datasets.DatasetDict)


def _is_in_memory(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return True
    datasets = sys.modules.get("datasets")
    return datasets is not None and isinstance(value, datasets.Dataset)


def _checked_table(method: str, rows: Any, key: str):
    """Rows given in memory, validated, as a `Dataset`; refused when the method does not train
    on their kind of data."""
    from irlalign.data.formats import IN_MEMORY
    from irlalign.data.loading import table_in_memory

    table, checked = table_in_memory(rows, key)
    wanted = spec_of(method).data_kind
    got = "preference" if checked.fmt.kind == "preference" else "demonstrations"
    if wanted in ("demonstrations", "preference") and wanted != got:
        raise ValueError(
            f"{key}: method '{method}' needs {wanted} data, got {checked.fmt.kind} rows in "
            f"{IN_MEMORY}"
        )
    return table


def dataset_store() -> Path:
    """Where rows given in memory are stored: `$IRLALIGN_CACHE/datasets`."""
    cache = os.environ.get("IRLALIGN_CACHE", Path.home() / ".cache" / "irlalign")
    return Path(cache) / "datasets"


@contextmanager
def _one_warning_per_dataset() -> Iterator[None]:
    """Rows given in memory were checked (and any repeats reported) under their config key;
    the run checks the stored copy again, which would repeat the warning under a cache path."""
    from irlalign.data.formats import DataWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", re.escape(str(dataset_store())), DataWarning)
        yield


def _with_hint(resolve_it, hints: Mapping[str, str]) -> RunConfig:
    """Run ``resolve_it``; a missing required key also names the argument that sets it."""
    try:
        return resolve_it()
    except ValueError as err:
        message = str(err)
        for key, argument in hints.items():
            if message.startswith(key) and "required" in message:
                raise ValueError(f"{message} (set it with {argument})") from None
        raise


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The YAML mapping in `path`; an unreadable file or invalid YAML is one located error."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read the config file ({err})") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
    if raw is None:
        raise ValueError(f"{path}: the config file is empty")
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of config sections, got {type(raw).__name__}")
    return raw


def _yaml_problem(err) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


# ---- what a method's config holds, for `irlalign train METHOD --help` and notebooks

# `training` keys every `Trainer` method takes besides `TrainingArguments`' own.
TRAINER_TRAINING = (
    FieldDoc("output_dir", "str", "(required)", "the run folder"),
    FieldDoc(
        "skip_nonfinite_steps",
        "int",
        "0",
        "steps with a NaN/inf gradient norm skipped before the run stops",
    ),
    FieldDoc(
        "resume_from_checkpoint", "bool | str", "None", "true: the newest checkpoint; or a path"
    ),
    FieldDoc("overwrite_output_dir", "bool", "False", "empty a folder holding another run first"),
    FieldDoc("*", "", "", "any other transformers.TrainingArguments keyword"),
)
REFERENCE = FieldDoc(
    "reference_path", "str | None", "None", "the frozen reference model (None: the initial policy)"
)


def options(method: str) -> dict[str, list[FieldDoc]]:
    """Every key of ``method``'s config by section, with its type, default and help: what
    `irlalign train METHOD --help` prints. Imports the method's module (and so torch)."""
    spec = spec_of(method)
    model = field_docs(ModelOptions)
    if spec.needs_reference or spec.uses_loop_args:
        model.append(REFERENCE)
    data = [
        dataclasses.replace(d, default="(required)") if d.name == "train" else d
        for d in field_docs(DataOptions)
    ]
    if spec.uses_loop_args:
        from irlalign.loops.setup import LoopArgs

        training = field_docs(LoopArgs)
    else:
        training = list(TRAINER_TRAINING)
    return {
        "model": model,
        "data": data,
        "method": field_docs(spec.config_class()),
        "training": training,
        "eval": field_docs(EvalOptions),
    }


def sections_with(method: str, key: str) -> list[str]:
    """The sections of ``method``'s config that have a key ``key`` (for the hint on a key given
    without its section; imports the method's module)."""
    spec = spec_of(method)
    classes = {"model": ModelOptions, "data": DataOptions, "method": spec.config_class()}
    found = [section for section, cls in classes.items() if _has(cls, key)]
    if key in _training_keys(spec.uses_loop_args):
        found.append("training")
    if _has(EvalOptions, key):
        found.append("eval")
    return found


def _training_keys(loop: bool) -> set[str]:
    if loop:
        from irlalign.loops.setup import LoopArgs

        return {f.name for f in dataclasses.fields(LoopArgs)}
    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments)} | {
        d.name for d in TRAINER_TRAINING
    }


def _has(cls: type, key: str) -> bool:
    return key in {f.name for f in dataclasses.fields(cls)}
