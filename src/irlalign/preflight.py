"""Checks of a resolved config against the files it names, run by `irlalign.methods.train`
before anything is loaded or written, each error naming the config key.

- `model.path`, `model.reference_path` and an RL method's `reward_model` are local model folders
  holding a readable `config.json`, or `hub:<org>/<name>`; `data.train` and `data.eval` exist
  locally or are `hub:<org>/<name>` (`irlalign.paths`);
- `eval.synthetic_task` is a task folder (`task.json`), so that a typo is not found only after
  training, and is given when an RL method's reward is `gold` (the task's r*);
- `data.max_length` fits the model's positions (`max_position_embeddings` and its synonyms), for
  the runs that tokenise with it (not the online loops, which read prompts only): a value the
  config gives is an error when it does not fit, the default (512) is lowered to the positions;
- a reference model has the policy's vocabulary size.

Hub models are not inspected here: their config is read when they load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from irlalign.config import RunConfig
from irlalign.paths import hub_id, local_path, missing_message


def check_inputs(cfg: RunConfig, runner_kind: str) -> None:
    models = [("model.path", cfg.model.path)]
    if cfg.reference is not None:
        models.append(("model.reference_path", cfg.reference.path))
    models += [("method.reward_model", folder) for folder in _reward_folders(cfg.method_config)]
    configs = {key: _model_config(path, key) for key, path in models}
    _check_data(cfg.data.train, "data.train")
    if cfg.data.eval:
        _check_data(cfg.data.eval, "data.eval")
    if cfg.eval.synthetic_task:
        _check_task(cfg.eval.synthetic_task)
    elif _needs_task(cfg.method_config):
        raise ValueError("method.reward_model: 'gold' is the reward of eval.synthetic_task; set it")
    if runner_kind != "loop":
        _fit_max_length(cfg, configs["model.path"])
    if "model.reference_path" in configs:
        _check_same_vocabulary(configs["model.path"], configs["model.reference_path"])


def _with_key(key: str, err: Exception) -> Exception:
    return type(err)(f"{key}: {err}")


def _model_config(path: str, key: str) -> dict[str, Any] | None:
    """The config.json of a local model folder (None for a Hub model), errors naming `key`."""
    from irlalign.modeling.load import read_model_config

    try:
        if hub_id(path) is not None:
            return None
        return read_model_config(path)
    except (FileNotFoundError, ValueError) as err:
        raise _with_key(key, err) from None


def _reward_folders(method_config: Any) -> list[str]:
    """The model folders an RL method's `reward_model` names (none for `gold`, the task's r*)."""
    from irlalign.loops.setup import GOLD, RLConfig
    from irlalign.modeling.reward_specs import reward_spec_folders

    if not isinstance(method_config, RLConfig) or method_config.reward_model == GOLD:
        return []
    return reward_spec_folders(method_config.reward_model)


def _needs_task(method_config: Any) -> bool:
    from irlalign.loops.setup import GOLD, RLConfig

    return isinstance(method_config, RLConfig) and method_config.reward_model == GOLD


def _check_data(spec: str, key: str) -> None:
    try:
        if hub_id(spec) is not None:
            return
    except ValueError as err:
        raise _with_key(key, err) from None
    if not local_path(spec).exists():
        raise FileNotFoundError(f"{key}: {missing_message(spec, 'file or folder')}")


def _check_task(task: str) -> None:
    folder = local_path(task)
    if not folder.exists():
        raise FileNotFoundError(f"eval.synthetic_task: {missing_message(task, 'task folder')}")
    if not (folder / "task.json").is_file():
        raise FileNotFoundError(
            f"eval.synthetic_task: {task}: not a synthetic task folder (no task.json); "
            f"`irlalign synthetic build --out {task}` builds one"
        )


def _fit_max_length(cfg: RunConfig, config: dict[str, Any] | None) -> None:
    """Rows longer than the model's positions fail at the first forward pass: refuse such a
    `data.max_length`, or lower the default one (which the user never chose) to fit."""
    from irlalign.modeling.load import POSITION_KEYS, text_setting

    max_length = cfg.data.max_length
    positions = None if config is None else text_setting(config, POSITION_KEYS)
    if max_length is None or positions is None or max_length <= positions:
        return
    if "data.max_length" in cfg.defaulted:
        cfg.data.max_length = positions
        print(f"data.max_length: the default {max_length} lowered to the model's {positions}")
        return
    raise ValueError(
        f"data.max_length: {max_length} tokens is more than the {positions} positions of "
        f"the model ({Path(cfg.model.path) / 'config.json'}); set data.max_length <= {positions}"
    )


def _check_same_vocabulary(policy: dict[str, Any] | None, reference: dict[str, Any] | None):
    from irlalign.modeling.load import text_setting

    if policy is None or reference is None:
        return
    mine, theirs = (text_setting(c, ("vocab_size",)) for c in (policy, reference))
    if None not in (mine, theirs) and mine != theirs:
        raise ValueError(
            f"model.reference_path: the reference has a vocabulary of {theirs} tokens, the "
            f"policy (model.path) one of {mine}; the KL penalty needs the same tokenizer"
        )
