"""The run config: five sections, strict keys, YAML number coercion and `--section.key` flags.

A config has `model` (`ModelOptions`), `data` (`DataOptions`), `method`
(the method's own dataclass), `training` (`transformers.TrainingArguments` keywords, or
`LoopArgs` for the online loops and pipelines) and `eval` (`EvalOptions`). Unknown keys are
errors, and so are values of the wrong simple type (a string where a field is an int, a float, a
bool or a list, an unknown enum value), named `section.key`. This module imports neither torch
nor transformers, so building and checking a config is cheap; `irlalign.methods.resolve` turns a
raw mapping into a `RunConfig`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECTIONS = ("model", "data", "method", "training", "eval")
DTYPE_NAMES = ("bfloat16", "float16", "float32")  # `model.dtype`; torch dtypes in modeling.load


@dataclass
class LoraOptions:
    """LoRA through peft; `target_modules=None` lets peft pick the architecture's defaults."""

    r: int = 16  # adapter rank
    alpha: int = 32  # scaling numerator: updates are scaled by alpha / r
    dropout: float = 0.05  # dropout on the adapter's input
    target_modules: list[str] | str | None = None  # None: peft's default for the architecture
    # Modules trained in full and saved beside the adapter (e.g. a new score head).
    modules_to_save: list[str] | None = None


@dataclass
class ModelOptions:
    """How to load one model. `path` is a local folder or `hub:<org>/<name>`."""

    path: str  # a local model folder (with config.json), or `hub:<org>/<name>` for the Hub
    dtype: str = "float32"  # float32, bfloat16 or float16 weights
    device: str | None = None  # None: leave placement to accelerate / the trainer
    trust_remote_code: bool = False  # passed to `from_pretrained`; off unless you trust the repo
    lora: LoraOptions | None = None  # train LoRA adapters instead of every weight
    extra: dict[str, Any] = field(default_factory=dict)  # more `from_pretrained` keywords

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype must be one of {sorted(DTYPE_NAMES)}, got {self.dtype!r}")
        if isinstance(self.lora, dict):
            self.lora = build_section(LoraOptions, self.lora, "model.lora")


@dataclass
class DataOptions:
    train: str = ""  # .jsonl/.json/.csv/.parquet file, save_to_disk folder or `hub:<org>/<name>`
    split: str = "train"  # the split of `train` to read
    eval: str | None = None  # held-out data in the same formats (None: no evaluation set)
    eval_split: str = "test"  # the split of `eval` to read
    max_rows: int | None = None  # use the first N training rows (data-size studies)
    max_length: int | None = 512  # prompt + response tokens per row (None: no limit)
    max_prompt_length: int | None = None  # prompt tokens kept when truncating (None: no cap)
    # Rows over the limits: "truncate_prompt_left" keeps the prompt's last tokens, then cuts the
    # response on the right (what is trained on survives longest); "drop" skips the row.
    truncation: str = "truncate_prompt_left"
    add_special_tokens: bool = False  # let the tokenizer add BOS/EOS (chat templates add theirs)
    append_eos: bool = True  # end every response with EOS, so the model learns to stop

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError("data.train is required")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError("data.max_rows must be >= 1")


# How a dataset is cut into tokens: what a child run inherits from its parent's `data` section
# (the rows themselves never are).
TOKENISATION_FIELDS = (
    "max_length",
    "max_prompt_length",
    "truncation",
    "add_special_tokens",
    "append_eos",
)


@dataclass
class EvalOptions:
    synthetic_task: str | None = None  # task folder (task.json): evaluate the final model on it
    samples: int = 4  # responses per held-out prompt
    seed: int = 0  # sampling seed of the evaluation (independent of training's)


@dataclass
class RunConfig:
    method_name: str
    model: ModelOptions
    data: DataOptions
    method_config: Any
    training: dict[str, Any]
    eval: EvalOptions = field(default_factory=EvalOptions)
    reference: ModelOptions | None = None
    # `section.key`s the config left at their defaults, which the file checks may fit to the
    # model (`data.max_length` to its positions); a value the user wrote is never changed.
    defaulted: frozenset[str] = frozenset()

    @property
    def run_dir(self) -> Path:
        return Path(self.training["output_dir"])

    @property
    def seed(self) -> int:
        return int(self.training.get("seed", 42))

    def to_dict(self) -> dict[str, Any]:
        """What `config.yaml` holds (a reference model is written as `model.reference_path`)."""
        model = dataclasses.asdict(self.model)
        if self.reference is not None:
            model["reference_path"] = self.reference.path
        return {
            "method_name": self.method_name,
            "model": model,
            "data": dataclasses.asdict(self.data),
            "method": dataclasses.asdict(self.method_config),
            "training": self.training,
            "eval": dataclasses.asdict(self.eval),
        }


def section_values(values: Any, section: str) -> dict[str, Any]:
    """A section's raw mapping (None: empty); anything else is an error naming the section."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        got = type(values).__name__
        raise ValueError(f"section '{section}' must be a mapping of keys, got {got}: {values!r}")
    return dict(values)


def check_keys(names: set[str], values: dict[str, Any], section: str) -> None:
    """Unknown keys are errors; a near miss is named, since most are typos."""
    import difflib

    unknown = sorted(str(k) for k in set(values) - names)
    if not unknown:
        return
    shown = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(names), n=1)
        shown.append(f"{key} (did you mean {close[0]}?)" if close else key)
    raise ValueError(f"unknown key(s) in section '{section}': {', '.join(shown)}")


def build_section(cls: type, values: dict[str, Any] | None, section: str):
    """``cls(**values)`` with unknown keys, missing required keys, values of the wrong type and
    the class's own checks all reported by section and key."""
    values = section_values(values, section)
    fields = dataclasses.fields(cls)
    check_keys({f.name for f in fields}, values, section)
    for f in fields:
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in values:
            raise ValueError(f"{section}.{f.name} is required")
    check_types(cls, values, section)
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        if section in str(err):  # already names its section (or a nested one)
            raise
        raise ValueError(f"{section}: {err}") from err


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The evaluated annotations of a dataclass (empty when one cannot be evaluated)."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a forward reference that does not resolve: check no types for cls
        return {}


def check_types(cls: type, values: dict[str, Any], section: str) -> None:
    """Every value against its field's annotation, for the simple types YAML gives."""
    hints = field_types(cls)
    for key, value in values.items():
        expected = hints.get(key)
        if expected is not None and not value_matches(value, expected):
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise ValueError(f"{section}.{key}: expected {describe_type(expected)}, got {shown}")


def _members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _enum_values(annotation: Any) -> list[str] | None:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(e.value) for e in annotation]
    return None


# The YAML scalar and container types a field may hold, and how each is described.
_SIMPLE: dict[Any, tuple[Any, str]] = {
    type(None): (lambda v: v is None, "null"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
    list: (lambda v: isinstance(v, list | tuple), "a list"),
    tuple: (lambda v: isinstance(v, list | tuple), "a list"),
    dict: (lambda v: isinstance(v, dict), "a mapping"),
}


def _simple(member: Any) -> tuple[Any, str] | None:
    return _SIMPLE.get(typing.get_origin(member) or member)


def value_matches(value: Any, annotation: Any) -> bool:
    """True unless `value` is certainly not of `annotation` (unknown types always match)."""
    members = _members(annotation)
    choices = [v for m in members for v in (_enum_values(m) or [])]
    if choices and isinstance(value, str):
        return value in choices  # `SchedulerType | str` still takes only the enum's names
    for member in members:
        if typing.get_origin(member) is typing.Literal:
            if value in typing.get_args(member):
                return True
            continue
        simple = _simple(member)
        if simple is None and _enum_values(member) is None:
            return True
        if simple is not None and simple[0](value):
            return True
    return False


def describe_type(annotation: Any) -> str:
    words = []
    members = _members(annotation)
    has_enum = any(_enum_values(m) is not None for m in members)
    for member in members:
        if (choices := _enum_values(member)) is not None:
            words.append(f"one of {', '.join(choices)}")
        elif has_enum and member is str:
            continue  # the enum's names are the strings it takes
        elif typing.get_origin(member) is typing.Literal:
            words.extend(repr(a) for a in typing.get_args(member))
        elif (simple := _simple(member)) is not None:
            words.append(simple[1])
    return " or ".join(dict.fromkeys(words)) or "another type"


# YAML 1.1 (PyYAML) reads `1e-4` as a string; only `1.0e-4` is a float. Users write both.
_EXPONENT_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def coerce_numbers(value: Any) -> Any:
    """Floats written like `1e-4` (strings to PyYAML) become floats, at any depth."""
    if isinstance(value, dict):
        return {k: coerce_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [coerce_numbers(v) for v in value]
    if isinstance(value, str) and _EXPONENT_FLOAT.match(value):
        return float(value)
    return value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`--section.key value` pairs (values parsed as YAML scalars) onto a raw config."""
    import yaml

    if len(overrides) % 2:
        raise ValueError(f"overrides come in '--section.key value' pairs, got {overrides}")
    out = {k: dict(v or {}) if isinstance(v, dict) else v for k, v in raw.items()}
    for flag, value in zip(overrides[::2], overrides[1::2], strict=True):
        if not flag.startswith("--") or "." not in flag:
            raise ValueError(f"bad override {flag!r}; expected --section.key")
        section, key = flag[2:].split(".", 1)
        if section not in SECTIONS:
            raise ValueError(f"unknown config section {section!r} in {flag}")
        set_nested(out.setdefault(section, {}), key, yaml.safe_load(value))
    return out


def set_nested(node: dict[str, Any], dotted: str, value: Any) -> None:
    """``node[a][b][c] = value`` for ``dotted = "a.b.c"``, creating (copies of) the parents."""
    *parents, leaf = dotted.split(".")
    for name in parents:
        node[name] = dict(node.get(name) or {})
        node = node[name]
    node[leaf] = value


@dataclass(frozen=True)
class FieldDoc:
    name: str
    type: str
    default: str
    help: str


def field_docs(cls: type) -> list[FieldDoc]:
    """Every field of a config dataclass with its type, default and help: the comment on the
    field's line, else the comment lines just above it (read from the class's source)."""
    import inspect

    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # inherited fields keep their base class's comments
        if dataclasses.is_dataclass(klass):
            comments.update(_field_comments(inspect.getsource(klass)))
    return [
        FieldDoc(f.name, _type_name(f.type), _default_text(f), comments.get(f.name, ""))
        for f in dataclasses.fields(cls)
    ]


def _field_comments(source: str) -> dict[str, str]:
    out: dict[str, str] = {}
    above: list[str] = []
    for line in source.splitlines():
        text = line.strip()
        if text.startswith("#"):
            above.append(text.lstrip("# ").strip())
            continue
        match = re.match(r"^(\w+)\s*:[^#]*?(?:#\s*(.*))?$", text)
        if match and not text.startswith(("def ", "class ", "return")):
            name, inline = match.group(1), (match.group(2) or "").strip()
            out.setdefault(name, inline or " ".join(above))
        above = []
    return out


def _type_name(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return repr(dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value)
    return "(required)"
