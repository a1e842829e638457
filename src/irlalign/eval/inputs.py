"""The inputs of a judged evaluation, checked before any model loads: the policy and baseline
folders, the prompts, the judge and the synthetic task. Each problem is one error naming the
command-line flag."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irlalign.paths import hub_id, local_path, missing_message

# The `reward_model` value of the synthetic task's true reward r*, as the loops name it
# (`irlalign.loops.setup.GOLD`; the loops sit above this layer).
GOLD = "gold"


@dataclass(frozen=True)
class JudgedInputs:
    """Resolved model folders, the checked prompt rows, the judge's `reward_model` string and
    the task folder (synthetic prompts) or None."""

    model: str
    prompts: Any  # irlalign.eval.prompts.PromptRows
    judge: str | None = None
    baseline: str | None = None
    task: str | None = None


def check_inputs(
    model: str,
    prompts: str,
    split: str,
    *,
    judge: str | None = None,
    baseline: str | None = None,
    task: str | None = None,
) -> JudgedInputs:
    """Resolve run folders to their final checkpoints, read and validate the prompt rows, check
    the judge names a reward model (and `gold` a task); nothing is loaded but config files."""
    from irlalign.eval.checkpoints import resolve_model
    from irlalign.eval.prompts import check_prompt_rows

    resolved = resolve_model(model, "--model")
    base = resolve_model(baseline, "--baseline") if baseline is not None else None
    rows = check_prompt_rows(prompts, split)
    task = find_task(task, prompts)
    if judge is not None:
        judge = check_judge(judge, task)
    return JudgedInputs(resolved, rows, judge, base, task)


def find_task(task: str | None, prompts: str) -> str | None:
    """The synthetic task folder: ``task`` (checked), else the folder holding the prompts when
    it is a task (`TASK/eval_prompts`), else None."""
    if task is not None:
        if not (local_path(task) / "task.json").is_file():
            raise FileNotFoundError(
                f"--task: {task}: not a synthetic task folder (no task.json); "
                f"`irlalign synthetic build --out {task}` builds one"
            )
        return str(local_path(task))
    if hub_id(prompts) is None:
        parent = local_path(prompts).parent
        if (parent / "task.json").is_file():
            return str(parent)
    return None


def check_judge(spec: str, task: str | None) -> str:
    """The judge as the loops' `reward_model` string: `gold` (needs a task), a reward-model
    folder or run folder (its final checkpoint), `gail:`, `implicit:` or `log_ratio:`."""
    from irlalign.modeling import gail_reward
    from irlalign.modeling.load import read_model_config
    from irlalign.modeling.reward_specs import reward_spec_folders

    if spec == GOLD:
        if task is None:
            raise ValueError(
                "--judge gold: the synthetic task's true reward needs the task folder: pass "
                "--task, or prompts from the task's own folder (TASK/eval_prompts)"
            )
        return spec
    folders = reward_spec_folders(spec)
    plain = folders == [spec]
    if plain:
        spec = folders[0] = final_if_run(spec)
    for folder in folders:
        if hub_id(folder) is not None:
            continue
        if not local_path(folder).exists():
            raise FileNotFoundError(f"--judge: {missing_message(folder, 'model folder')}")
        try:
            read_model_config(folder)
        except (FileNotFoundError, ValueError) as err:
            raise type(err)(f"--judge: {err}") from None
    if plain or spec.startswith(gail_reward.PREFIX):
        _check_reward_model(folders[0])
    return spec


def final_if_run(spec: str) -> str:
    """A run folder's final checkpoint; any other string as it is."""
    from irlalign.eval.checkpoints import run_final_checkpoint

    folder = local_path(spec)
    if hub_id(spec) is None and folder.is_dir() and not (folder / "config.json").is_file():
        final = run_final_checkpoint(folder)
        if final is not None:
            return str(final)
    return spec


def _check_reward_model(folder: str) -> None:
    from irlalign.modeling.reward import is_reward_model_folder

    if hub_id(folder) is None and not is_reward_model_folder(Path(folder)):
        raise ValueError(
            f"--judge: {folder}: not a reward model (a sequence classifier with one label, or "
            "a model with a Preference-Transformer or AVA head); a policy checkpoint judges as "
            f"implicit:{folder} (its IQLearn reward) or log_ratio:{folder},<reference>"
        )
