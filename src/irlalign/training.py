"""`irlalign train <method>`: config sections → data, models, trainer → the run folder.

A config has five sections: `model` (ModelOptions), `data` (DataOptions), `method` (the method's
own dataclass), `training` (`transformers.TrainingArguments` keywords) and `eval` (EvalOptions).
Unknown keys are errors; the resolved config is written to `<run>/config.yaml`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irlalign.modeling.load import ModelOptions, frozen_copy, load_model, load_tokenizer
from irlalign.trainers.adversarial import AdversarialConfig, train_adversarial
from irlalign.trainers.afd import AfDConfig, train_afd
from irlalign.trainers.ava import AVAConfig, AVATrainer
from irlalign.trainers.dpo import DPOConfig, DPOTrainer
from irlalign.trainers.frft import FRFTConfig, train_frft
from irlalign.trainers.iqlearn import IQLearnConfig, IQLearnTrainer
from irlalign.trainers.ppo import PPOConfig, train_ppo
from irlalign.trainers.preference_transformer import (
    PreferenceTransformerConfig,
    PreferenceTransformerTrainer,
)
from irlalign.trainers.reward import RewardConfig, RewardTrainer
from irlalign.trainers.rloo import RLOOConfig, train_rloo
from irlalign.trainers.sft import SFTConfig, SFTTrainer


@dataclass(frozen=True)
class Method:
    config: type
    trainer: type
    model_kind: str  # "causal_lm" or "reward"
    data_kind: str  # "demonstrations" (prompt/completion or messages), "preference" or "any"
    needs_reference: bool = False
    # What the final checkpoint is evaluated as on a synthetic task: a policy, a reward model.
    evaluates: tuple[str, ...] = ("policy",)
    # Online methods are explicit loops `loop(cfg) -> results` (no `transformers.Trainer`); their
    # `training` section is `irlalign.trainers.online.LoopArgs`.
    loop: Callable[[Any], dict[str, Any]] | None = None


METHODS: dict[str, Method] = {
    "sft": Method(SFTConfig, SFTTrainer, "causal_lm", "demonstrations"),
    "iqlearn": Method(IQLearnConfig, IQLearnTrainer, "causal_lm", "demonstrations"),
    "reward": Method(RewardConfig, RewardTrainer, "reward", "preference", evaluates=("reward",)),
    "dpo": Method(DPOConfig, DPOTrainer, "causal_lm", "preference", needs_reference=True),
    "ava": Method(AVAConfig, AVATrainer, "causal_lm", "any", evaluates=("policy", "reward")),
    "preference_transformer": Method(
        PreferenceTransformerConfig,
        PreferenceTransformerTrainer,
        "causal_lm",
        "preference",
        evaluates=("reward",),
    ),
    "rloo": Method(RLOOConfig, None, "causal_lm", "prompts", loop=train_rloo),
    "ppo": Method(PPOConfig, None, "causal_lm", "prompts", loop=train_ppo),
    "afd": Method(AfDConfig, None, "causal_lm", "demonstrations", loop=train_afd),
    "frft": Method(FRFTConfig, None, "causal_lm", "preference", loop=train_frft),
    "adversarial": Method(
        AdversarialConfig, None, "causal_lm", "demonstrations", loop=train_adversarial
    ),
}
SECTIONS = ("model", "data", "method", "training", "eval")


@dataclass
class DataOptions:
    train: str = ""  # file, save_to_disk folder or Hub id
    split: str = "train"
    eval: str | None = None
    eval_split: str = "test"
    max_rows: int | None = None  # use the first N training rows (data-size studies)
    max_length: int | None = 512
    max_prompt_length: int | None = None
    truncation: str = "truncate_prompt_left"  # or "drop"
    add_special_tokens: bool = False
    append_eos: bool = True

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError("data.train is required")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError("data.max_rows must be >= 1")


@dataclass
class EvalOptions:
    synthetic_task: str | None = None  # task folder: evaluate the final model on it
    samples: int = 4
    seed: int = 0


@dataclass
class RunConfig:
    method: str
    model: ModelOptions
    data: DataOptions
    method_config: Any
    training: dict[str, Any]
    eval: EvalOptions = field(default_factory=EvalOptions)
    reference: ModelOptions | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.training["output_dir"])

    def to_dict(self) -> dict[str, Any]:
        model = dataclasses.asdict(self.model)
        return {
            "method_name": self.method,
            "model": model,
            "data": dataclasses.asdict(self.data),
            "method": dataclasses.asdict(self.method_config),
            "training": self.training,
            "eval": dataclasses.asdict(self.eval),
        }


def _build(cls: type, values: dict[str, Any] | None, section: str):
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown key(s) in section '{section}': {', '.join(unknown)}")
    return cls(**values)


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


def resolve(method: str, raw: dict[str, Any]) -> RunConfig:
    """Validate a raw config mapping for `method` (all checks happen before any loading)."""
    raw = coerce_numbers(raw)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    unknown = sorted(set(raw) - set(SECTIONS) - {"method_name"})
    if unknown:
        raise ValueError(f"unknown config section(s): {', '.join(unknown)}")
    model_raw = dict(raw.get("model") or {})
    ref_path = model_raw.pop("reference_path", None)
    model = _build(ModelOptions, model_raw, "model")
    training = dict(raw.get("training") or {})
    if "output_dir" not in training:
        raise ValueError("training.output_dir (the run folder) is required")
    reference = dataclasses.replace(model, path=ref_path, lora=None) if ref_path else None
    if METHODS[method].loop is not None:  # validate the loop's `training` section up front
        from irlalign.trainers.online import LoopArgs

        _build(LoopArgs, training, "training")
    return RunConfig(
        method=method,
        model=model,
        data=_build(DataOptions, raw.get("data"), "data"),
        method_config=_build(METHODS[method].config, raw.get("method"), "method"),
        training=training,
        eval=_build(EvalOptions, raw.get("eval"), "eval"),
        reference=reference,
    )


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
        node = out.setdefault(section, {})
        *parents, leaf = key.split(".")  # --method.sampling.temperature 0.7
        for name in parents:
            node[name] = dict(node.get(name) or {})
            node = node[name]
        node[leaf] = yaml.safe_load(value)
    return out


def write_summary(run_dir: Path, name: str, payload: dict[str, Any]) -> None:
    (run_dir / name).write_text(json.dumps(payload, indent=2))


# ---------------------------------------------------------------------------------------------
# execution


def load_split(cfg: RunConfig, tokenizer, spec: str, split: str, max_rows: int | None):
    """Load, validate (file/row/field errors before training) and tokenise one split."""
    from irlalign.data.formats import check_dataset
    from irlalign.data.loading import load_rows
    from irlalign.data.tokenize import Truncation, tokenize_dataset

    rows = load_rows(spec, split)
    if max_rows is not None:
        rows = rows.select(range(min(max_rows, len(rows))))
    source = f"{spec} [{split}]"
    fmt = check_dataset(rows, source).fmt
    wanted = METHODS[cfg.method].data_kind
    got = "preference" if fmt.kind == "preference" else "demonstrations"
    if wanted not in (got, "any"):
        raise ValueError(f"{source}: method '{cfg.method}' needs {wanted} data, got {fmt.kind}")
    trunc = Truncation(cfg.data.max_length, cfg.data.max_prompt_length, cfg.data.truncation)
    return tokenize_dataset(
        rows, tokenizer, trunc, cfg.data.add_special_tokens, cfg.data.append_eos, source, fmt
    )


def training_arguments(cfg: RunConfig):
    from transformers import TrainingArguments

    kwargs = {
        "report_to": "none",
        "logging_steps": 10,
        "save_strategy": "steps",
        "save_steps": 500,
        "save_total_limit": 2,
        "disable_tqdm": False,
        **cfg.training,
    }
    kwargs["output_dir"] = str(cfg.run_dir / "checkpoints")
    kwargs["remove_unused_columns"] = False  # completion masks are not model inputs
    kwargs.setdefault("label_names", [])
    resume = kwargs.pop("resume_from_checkpoint", None)
    return TrainingArguments(**kwargs), resume


def build_trainer(cfg: RunConfig, tokenizer, train_ds, eval_ds):
    from transformers import set_seed

    from irlalign.trainers.common import JsonlMetricsCallback, collator_for

    method = METHODS[cfg.method]
    args, resume = training_arguments(cfg)
    # Seed before loading: freshly initialised heads (a classifier's score layer, the trainers'
    # extra heads) must not depend on what ran earlier in the same process.
    set_seed(args.seed)
    model = load_model(cfg.model, kind=method.model_kind)
    extra = {}
    if method.needs_reference:
        ref = load_model(cfg.reference) if cfg.reference else frozen_copy(unwrapped(model))
        extra["ref_model"] = ref
    trainer = method.trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=collator_for(data_kind_of(train_ds), tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=[JsonlMetricsCallback(cfg.run_dir / "metrics.jsonl")],
        method=cfg.method_config,
        **extra,
    )
    return trainer, resume


def data_kind_of(dataset) -> str:
    """What a tokenised dataset holds (methods with data_kind "any" accept both)."""
    return "preference" if "chosen_input_ids" in dataset.column_names else "demonstrations"


def unwrapped(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def train(cfg: RunConfig) -> dict[str, Any]:
    """Run one training job end to end; returns what `eval.json` holds."""
    import yaml

    from irlalign.runs import RunFolder

    if METHODS[cfg.method].loop is not None:
        return METHODS[cfg.method].loop(cfg)
    run = RunFolder(cfg.run_dir)
    main_process = int(os.environ.get("RANK", "0")) == 0  # under accelerate/torchrun
    if main_process:
        run.write_config(cfg.to_dict())
        run.write_env(cfg.training.get("seed", 42))
    tokenizer = load_tokenizer(cfg.model.path, cfg.model.trust_remote_code)
    train_ds, stats = load_split(cfg, tokenizer, cfg.data.train, cfg.data.split, cfg.data.max_rows)
    eval_ds = None
    if cfg.data.eval:
        eval_ds, _ = load_split(cfg, tokenizer, cfg.data.eval, cfg.data.eval_split, None)
    if main_process:
        run.log_metrics({"step": 0, **stats.as_metrics()})
    print("data:", yaml.safe_dump(stats.as_metrics(), default_flow_style=True).strip())
    trainer, resume = build_trainer(cfg, tokenizer, train_ds, eval_ds)
    trainer.train(resume_from_checkpoint=resume)
    from irlalign.modeling.heads import save_pretrained_with_heads

    final = cfg.run_dir / "checkpoints" / "final"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(final)
    results = {"final_checkpoint": str(final), "data": stats.as_metrics()}
    if cfg.model.lora is not None and trainer.is_world_process_zero():
        # `final` holds the adapter (what peft users expect); `final_merged` a plain checkpoint.
        merged = cfg.run_dir / "checkpoints" / "final_merged"
        save_pretrained_with_heads(trainer.model.merge_and_unload(), merged)
        tokenizer.save_pretrained(merged)
        results["merged_checkpoint"] = str(merged)
        final = merged
    if cfg.eval.synthetic_task and trainer.is_world_process_zero():
        results.update(evaluate_final(cfg, final))
    if trainer.is_world_process_zero():
        run.write_eval(results)
    return results


def evaluate_final(cfg: RunConfig, final: Path) -> dict[str, Any]:
    """`synthetic`: policy metrics; `synthetic_rm`: reward-model metrics on held-out pairs."""
    from irlalign.synthetic.runner import eval_policy, eval_reward_model

    task, out = cfg.eval.synthetic_task, {}
    evaluates = METHODS[cfg.method].evaluates
    if "policy" in evaluates:
        out["synthetic"] = eval_policy(task, str(final), cfg.eval.samples, cfg.eval.seed)
    if "reward" in evaluates:
        out["synthetic_rm"] = eval_reward_model(task, final)
    return out
