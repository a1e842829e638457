"""The method table, `resolve` (raw mapping → `RunConfig`), `train` (run one config end to end)
and `run_child`, the one place that decides what a pipeline's sub-run inherits.

Each `MethodSpec` names its config dataclass and its runner as "module:attribute" strings,
imported on first use: reading the table (the CLI's `--help`) costs no torch import, and running
one method imports only that method's code. `resolve` checks the config's keys and values
(`training` against `TrainingArguments` or `LoopArgs`); `train` then checks the files the config
names (`irlalign.preflight`) before anything loads.

Three kinds of runner:
- `trainer`: a `transformers.Trainer` subclass, run by `irlalign.trainers.run`;
- `loop`: an explicit accelerate loop `fn(cfg) -> results` (`irlalign.loops`);
- `pipeline`: an outer loop `fn(cfg, run_child) -> results` (`irlalign.pipelines`) whose phases
  are themselves runs; it receives `run_child` so that it never imports this module.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irlalign.config import (
    SECTIONS,
    TOKENISATION_FIELDS,
    DataOptions,
    EvalOptions,
    ModelOptions,
    RunConfig,
    build_section,
    coerce_numbers,
    section_values,
)

RUNNER_KINDS = ("trainer", "loop", "pipeline")


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class MethodSpec:
    config: str  # "module:Class" of the `method` section's dataclass
    runner: str  # "module:attribute" of the trainer class, loop or pipeline function
    runner_kind: str  # one of RUNNER_KINDS
    model_kind: str = "causal_lm"  # what `model.path` is loaded as: "causal_lm" or "reward"
    data_kind: str = "demonstrations"  # "demonstrations", "preference", "prompts" or "any"
    needs_reference: bool = False
    # What the final checkpoint is evaluated as on a synthetic task: a policy, a reward model.
    evaluates: tuple[str, ...] = ("policy",)

    def config_class(self) -> type:
        return _load(self.config)

    def runner_object(self) -> Any:
        return _load(self.runner)

    @property
    def uses_loop_args(self) -> bool:
        """Loops and pipelines read `training` as `LoopArgs`, not `TrainingArguments`."""
        return self.runner_kind != "trainer"


_T, _L, _P = "irlalign.trainers", "irlalign.loops", "irlalign.pipelines"
METHODS: dict[str, MethodSpec] = {
    "sft": MethodSpec(f"{_T}.sft:SFTConfig", f"{_T}.sft:SFTTrainer", "trainer"),
    "iqlearn": MethodSpec(f"{_T}.iqlearn:IQLearnConfig", f"{_T}.iqlearn:IQLearnTrainer", "trainer"),
    "reward": MethodSpec(
        f"{_T}.reward:RewardConfig",
        f"{_T}.reward:RewardTrainer",
        "trainer",
        model_kind="reward",
        data_kind="preference",
        evaluates=("reward",),
    ),
    "dpo": MethodSpec(
        f"{_T}.dpo:DPOConfig",
        f"{_T}.dpo:DPOTrainer",
        "trainer",
        data_kind="preference",
        needs_reference=True,
    ),
    "ava": MethodSpec(
        f"{_T}.ava:AVAConfig",
        f"{_T}.ava:AVATrainer",
        "trainer",
        data_kind="any",
        evaluates=("policy", "reward"),
    ),
    "preference_transformer": MethodSpec(
        f"{_T}.preference_transformer:PreferenceTransformerConfig",
        f"{_T}.preference_transformer:PreferenceTransformerTrainer",
        "trainer",
        data_kind="preference",
        evaluates=("reward",),
    ),
    "rloo": MethodSpec(
        f"{_L}.rloo:RLOOConfig", f"{_L}.rloo:train_rloo", "loop", data_kind="prompts"
    ),
    "ppo": MethodSpec(f"{_L}.ppo:PPOConfig", f"{_L}.ppo:train_ppo", "loop", data_kind="prompts"),
    "afd": MethodSpec(f"{_P}.afd:AfDConfig", f"{_P}.afd:train_afd", "pipeline"),
    "frft": MethodSpec(
        f"{_P}.frft:FRFTConfig", f"{_P}.frft:train_frft", "pipeline", data_kind="preference"
    ),
    "adversarial": MethodSpec(
        f"{_P}.adversarial:AdversarialConfig", f"{_P}.adversarial:train_adversarial", "pipeline"
    ),
    "demo_rl": MethodSpec(f"{_P}.demo_rl:DemoRLConfig", f"{_P}.demo_rl:train_demo_rl", "pipeline"),
}


def spec_of(method_name: str) -> MethodSpec:
    if method_name not in METHODS:
        raise ValueError(f"unknown method {method_name!r}; choose from {', '.join(METHODS)}")
    return METHODS[method_name]


def resolve(method_name: str, raw: dict[str, Any]) -> RunConfig:
    """Validate a raw config mapping for ``method_name`` (all checks happen before any loading)."""
    raw = coerce_numbers(raw)
    spec = spec_of(method_name)
    unknown = sorted(set(raw) - set(SECTIONS) - {"method_name"})
    if unknown:
        raise ValueError(f"unknown config section(s): {', '.join(unknown)}")
    model_raw = section_values(raw.get("model"), "model")
    ref_path = model_raw.pop("reference_path", None)
    if ref_path is not None and not isinstance(ref_path, str):
        raise ValueError(f"model.reference_path: expected a string, got {ref_path!r}")
    model = build_section(ModelOptions, model_raw, "model")
    training = section_values(raw.get("training"), "training")
    if "output_dir" not in training:
        raise ValueError("training.output_dir (the run folder) is required")
    reference = dataclasses.replace(model, path=ref_path, lora=None) if ref_path else None
    if spec.uses_loop_args:  # validate the loop's `training` section up front
        from irlalign.loops.setup import LoopArgs

        build_section(LoopArgs, training, "training")
    else:
        from irlalign.trainers.arguments import check_training, strategy_words

        training = strategy_words(training)  # config.yaml records "no", not false
        check_training(training)
    method_config = build_section(spec.config_class(), raw.get("method"), "method")
    if spec.runner_kind == "pipeline":
        check_phase_training(method_config)
    data = section_values(raw.get("data"), "data")
    return RunConfig(
        method_name=method_name,
        model=model,
        data=build_section(DataOptions, data, "data"),
        method_config=method_config,
        training=training,
        eval=build_section(EvalOptions, raw.get("eval"), "eval"),
        reference=reference,
        defaulted=frozenset() if "max_length" in data else frozenset({"data.max_length"}),
    )


def check_phase_training(method_config: Any) -> None:
    """A pipeline's `*_training` sections, checked now rather than when their phase starts
    (after the phases before it have trained): `rl_training` as `LoopArgs`, the others as a
    `Trainer` method's `training`."""
    from irlalign.loops.setup import LoopArgs
    from irlalign.trainers.arguments import check_training

    for f in dataclasses.fields(method_config):
        value = getattr(method_config, f.name)
        if not f.name.endswith("_training") or not isinstance(value, dict):
            continue
        section = f"method.{f.name}"
        if f.name == "rl_training":  # the phase adds its own output_dir
            build_section(LoopArgs, {"output_dir": "phase", **value}, section)
        else:
            check_training(value, section)


def train(cfg: RunConfig) -> dict[str, Any]:
    """Run one resolved config end to end; returns what its `eval.json` holds. Its inputs are
    checked first; the run then holds its folder (`irlalign.runs.claimed`): no second run writes
    into it, and another run's folder is refused unless the config resumes or overwrites it."""
    from irlalign.preflight import check_inputs
    from irlalign.runs import claimed

    spec = spec_of(cfg.method_name)
    check_inputs(cfg, spec.runner_kind)
    main = int(os.environ.get("RANK", "0")) == 0  # under accelerate/torchrun
    pipeline = spec.runner_kind == "pipeline"
    with claimed(cfg.run_dir, cfg.to_dict(), pipeline=pipeline, main=main):
        return _run(spec, cfg)


def _run(spec: MethodSpec, cfg: RunConfig) -> dict[str, Any]:
    if spec.runner_kind == "loop":
        return spec.runner_object()(cfg)
    if spec.runner_kind == "pipeline":
        return spec.runner_object()(cfg, run_child)
    from irlalign.trainers.run import train_with_trainer

    return train_with_trainer(cfg, spec)


def child_config(
    method_name: str,
    parent: RunConfig,
    *,
    folder: str | Path,
    model: str,
    data: dict[str, Any],
    method: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    reference: str | None = None,
    evaluate: bool = False,
) -> RunConfig:
    """The config of a pipeline phase, a run of ``method_name`` in ``parent.run_dir / folder``.

    Inherited from the parent: the model's loading options (dtype, device, LoRA,
    `trust_remote_code`, `extra`; never its path), the data's tokenisation options (`max_length`,
    truncation, special tokens, EOS), `training.seed` and `training.use_cpu`, and — only with
    ``evaluate`` — the `eval` section. Never inherited: which rows to train on (`data.train`,
    `split`, `max_rows`, `eval`): a phase gets exactly the ``data`` it is given, so a
    preference set is never cut to the size of the parent's demonstrations. ``training`` holds
    the phase's own keys; ``reference`` is the KL reference of an RL phase.
    """
    model_raw = {**dataclasses.asdict(parent.model), "path": model}
    if reference is not None:
        model_raw["reference_path"] = reference
    tokenisation = {k: getattr(parent.data, k) for k in TOKENISATION_FIELDS}
    raw = {
        "model": model_raw,
        "data": {**tokenisation, **data},
        "method": dict(method or {}),
        "training": {
            "seed": parent.seed,
            "use_cpu": parent.training.get("use_cpu", False),
            **(training or {}),
            "output_dir": str(parent.run_dir / folder),
        },
        "eval": dataclasses.asdict(parent.eval) if evaluate else {},
    }
    return resolve(method_name, raw)


def run_child(method_name: str, parent: RunConfig, **overrides: Any) -> dict[str, Any]:
    """`train(child_config(...))`: what a pipeline calls to run one of its phases.

    A rerun of the pipeline reuses a phase that finished with the same config and the same
    inputs (the files of its model, reference, reward model and data, unchanged since), and
    continues one that was interrupted from its newest complete checkpoint; any other run left
    in the phase's folder (another configuration) is removed first.
    """
    from irlalign.runs import PhaseLog, identity, reset

    cfg = child_config(method_name, parent, **overrides)
    log, name = PhaseLog(parent.run_dir), str(cfg.run_dir.relative_to(parent.run_dir))
    key = {"config": identity(cfg.to_dict()), "inputs": input_fingerprints(cfg)}
    outputs = (cfg.run_dir / "eval.json", cfg.run_dir / "checkpoints" / "final")
    if log.reusable(name, key, outputs):
        print(f"{cfg.run_dir}: finished before with this configuration and inputs; reused")
        return json.loads((cfg.run_dir / "eval.json").read_text())
    if log.started(name, key):
        cfg.training["resume_from_checkpoint"] = True
    else:
        reset(cfg.run_dir)
    log.start(name, key)
    results = train(cfg)
    log.finish(name, key, outputs=outputs)
    return results


def input_fingerprints(cfg: RunConfig) -> dict[str, Any]:
    """The fingerprints of the local files a run reads: a phase whose config is unchanged but
    whose model or data was rewritten (a retrained SFT model, a refit reward model) is redone."""
    from irlalign.modeling.reward_specs import reward_spec_folders
    from irlalign.runs import fingerprint

    reward = getattr(cfg.method_config, "reward_model", None)
    # `gail:`, `implicit:` and `log_ratio:` name model folders: their files are the inputs
    folders = reward_spec_folders(reward) if isinstance(reward, str) else []
    paths = {
        "model": cfg.model.path,
        "reference": cfg.reference.path if cfg.reference else None,
        "reward_model": folders[0] if len(folders) == 1 else None,
        "train": cfg.data.train,
        "eval": cfg.data.eval,
    }
    out = {k: fingerprint(v) for k, v in paths.items() if v}
    if len(folders) > 1:
        out["reward_model"] = [fingerprint(f) for f in folders]
    return out
