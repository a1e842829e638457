"""irlalign: align language models with inverse reinforcement learning.

The public names are imported on first use, so `import irlalign` stays cheap (no torch):

- `irlalign.train(method, model=..., data=..., output_dir=..., **overrides)`: train one method
  end to end from keyword arguments and in-memory rows (a list of dicts, a `datasets.Dataset`
  or `DatasetDict`) or files; returns the results dict (`irlalign.api`). `irlalign.train(cfg)`
  runs an already resolved `RunConfig`.
- `irlalign.resolve(method, raw)`: a raw config mapping (what a YAML preset holds) checked and
  turned into a `RunConfig`; `irlalign.build_config` does the same from `train`'s arguments;
  `irlalign.options(method)` lists every key of a method's config with its default and help.
- The method configs and trainers (`IQLearnConfig`, `IQLearnTrainer`, ...; any method added to
  `irlalign.methods.METHODS` is reachable the same way), the online loops' configs
  (`RLOOConfig`, `PPOConfig`, `LoopArgs`), the pipelines' configs (`AfDConfig`, `FRFTConfig`,
  `AdversarialConfig`), and `load_reward_model`.

Accessing a method's config or trainer imports its module, and with it torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_T, _L, _P = "irlalign.trainers", "irlalign.loops", "irlalign.pipelines"
# public name -> "module:attribute", imported on first access.
_EXPORTS: dict[str, str] = {
    "train": "irlalign.api:train",
    "build_config": "irlalign.api:build_config",
    "options": "irlalign.api:options",
    "resolve": "irlalign.methods:resolve",
    "METHODS": "irlalign.methods:METHODS",
    "RunConfig": "irlalign.config:RunConfig",
    "ModelOptions": "irlalign.config:ModelOptions",
    "DataOptions": "irlalign.config:DataOptions",
    "EvalOptions": "irlalign.config:EvalOptions",
    "LoraOptions": "irlalign.config:LoraOptions",
    "SFTConfig": f"{_T}.sft:SFTConfig",
    "SFTTrainer": f"{_T}.sft:SFTTrainer",
    "IQLearnConfig": f"{_T}.iqlearn:IQLearnConfig",
    "IQLearnTrainer": f"{_T}.iqlearn:IQLearnTrainer",
    "RewardConfig": f"{_T}.reward:RewardConfig",
    "RewardTrainer": f"{_T}.reward:RewardTrainer",
    "DPOConfig": f"{_T}.dpo:DPOConfig",
    "DPOTrainer": f"{_T}.dpo:DPOTrainer",
    "AVAConfig": f"{_T}.ava:AVAConfig",
    "AVATrainer": f"{_T}.ava:AVATrainer",
    "PreferenceTransformerConfig": f"{_T}.preference_transformer:PreferenceTransformerConfig",
    "PreferenceTransformerTrainer": f"{_T}.preference_transformer:PreferenceTransformerTrainer",
    "RLOOConfig": f"{_L}.rloo:RLOOConfig",
    "PPOConfig": f"{_L}.ppo:PPOConfig",
    "LoopArgs": f"{_L}.setup:LoopArgs",
    "AfDConfig": f"{_P}.afd:AfDConfig",
    "FRFTConfig": f"{_P}.frft:FRFTConfig",
    "AdversarialConfig": f"{_P}.adversarial:AdversarialConfig",
    "load_reward_model": "irlalign.modeling.reward:load_reward_model",
}

__all__: list[str] = ["__version__", *_EXPORTS]


def _method_classes() -> dict[str, str]:
    """The config and trainer classes of every method in the table, by class name: a method
    added to `irlalign.methods.METHODS` is exported without an entry above."""
    table = importlib.import_module("irlalign.methods").METHODS  # by name, like every export

    out = {}
    for spec in table.values():
        targets = [spec.config] + ([spec.runner] if spec.runner_kind == "trainer" else [])
        out.update({target.partition(":")[2]: target for target in targets})
    return out


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None and name[:1].isupper():  # class names only: never a submodule's
        target = _method_classes().get(name)
    if target is None:
        raise AttributeError(f"module 'irlalign' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
