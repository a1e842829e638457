"""What the quickstart trains: each row is a shipped preset plus a few overrides that shorten
it for the demo. Presets write to `runs/...`; a row's config is the preset with `runs/` moved
under the quickstart's own folder, so `runs/task` is the task it builds and `runs/sft/...` its
SFT row."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESETS = Path(__file__).resolve().parent.parent / "presets"
PRESET_ROOT = "runs"  # where the presets put their runs
PRESET_TASK = "runs/task"  # and the synthetic task they train on

# (row label, policy spec relative to the task folder; `oracle:` names are tabular policies)
ORACLE_ROWS = (
    ("π_ref (reference language)", "oracle:ref_T1"),
    ("π_init (tiny LM pretrained on π_ref)", "pi_init"),
    ("π* (exact soft-optimal expert)", "oracle:expert"),
    ("styled demonstrator", "oracle:styled"),
)
# The online rows are the RLOO preset shortened to 50 iterations of 16 prompts × 4 samples (a
# quarter of its batch, to keep the demo within 3 minutes), evaluated at the end only, without
# the preset's final decay (longer than the whole shortened run).
SHORT_RL = {
    "method": {"k": 4, "prompts_per_step": 16},
    "training": {
        "max_steps": 50,
        "logging_steps": 25,
        "eval_steps": None,
        "lr_scheduler_type": "constant_with_warmup",
    },
}
NO_DECAY = ("training.lr_scheduler_kwargs",)  # the decay's arguments go with it


@dataclass(frozen=True)
class Row:
    label: str
    kind: str  # "policy", "reward_model", "online", "afd" or "frft": what the table reports
    preset: str  # file name under presets/synthetic
    folder: str  # the row's run folder inside the quickstart's folder
    overrides: dict[str, Any] = field(default_factory=dict)  # nested, merged into the preset
    needs: tuple[str, ...] = ()  # folders of rows that must have finished first
    drop: tuple[str, ...] = ()  # dotted preset keys removed before merging (replaced wholesale)


ROWS = (
    Row("SFT (MLE) on the demonstrations", "policy", "sft", "sft"),
    Row("IQLearn λ=0.1 on the demonstrations", "policy", "iqlearn", "iqlearn"),
    Row("AVA-d direct optimisation on the demonstrations", "policy", "ava_d", "ava_d"),
    Row("Bradley–Terry", "reward_model", "reward", "rm_reward"),
    Row(
        "Preference Transformer",
        "reward_model",
        "preference_transformer",
        "rm_preference_transformer",
    ),
    Row("AVA-p", "reward_model", "ava", "rm_ava"),
    Row(
        "RLOO against r*, dense (50 iterations)",
        "online",
        "rloo",
        "rloo_gold",
        SHORT_RL,
        drop=NO_DECAY,
    ),
    Row(
        "RLOO against AVA-p dense rewards (50 iterations)",
        "online",
        "rloo",
        "rloo_ava",
        {
            **SHORT_RL,
            "method": {
                **SHORT_RL["method"],
                "reward_model": "runs/rm_ava/checkpoints/final",
                "reward_norm": "initial",
                "kl_coef": 0.1,
            },
        },
        needs=("rm_ava",),
        drop=NO_DECAY,
    ),
    # AfD's four discriminators (50 steps each, on the first 300 demonstration prompts) and
    # best-of-N over a pool of 16 samples of the SFT row per prompt.
    Row(
        "afd",
        "afd",
        "afd",
        "afd",
        {
            "data": {"max_rows": 300},
            "method": {
                "variants": ["init_sft", "init_demo", "sft_demo", "bt_pairwise"],
                "sft_model": "runs/sft/checkpoints/final",
                "rm_training": {"max_steps": 50, "warmup_steps": 5, "use_cpu": True},
                "bon_n": [1, 4, 16],
                "bon_prompts": 64,
            },
        },
        needs=("sft",),
    ),
    # FRFT's three arms from the SFT row with the Bradley–Terry row as the pooled RM: a 300-pair
    # pool, one round, top-mean subsets of 80 + 20 pairs, 15 RLOO iterations.
    Row(
        "frft",
        "frft",
        "frft",
        "frft",
        {
            "data": {"max_rows": 300},
            "method": {
                "rounds": 1,
                "k": 80,
                "k_val": 20,
                "n_random_val": 200,
                "vanilla_rm": "runs/rm_reward/checkpoints/final",
                "policy_trainer": "rloo",
                "rl_method": {
                    "kl_coef": 0.05,
                    "reward_norm": "initial",
                    "k": 4,
                    "prompts_per_step": 16,
                },
                "rl_training": {"max_steps": 15, "eval_steps": None},
                "rl_prompts_per_round": 300,
            },
        },
        needs=("sft", "rm_reward"),
        drop=("method.rl_method",),  # the preset's are PPO settings; this row runs RLOO
    ),
)
# Longest first, so that two workers finish together.
ORDER = ("rm_reward", "sft", "rm_ava", "frft", "rm_preference_transformer", "afd")


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, mappings key by key (as `--section.key` flags do)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def rebase(value: Any, roots: dict[str, Path]) -> Any:
    """Every string of a preset that starts with a key of ``roots`` moved under its folder."""
    if isinstance(value, dict):
        return {k: rebase(v, roots) for k, v in value.items()}
    if isinstance(value, list):
        return [rebase(v, roots) for v in value]
    if isinstance(value, str):
        for prefix, folder in roots.items():
            if value == prefix or value.startswith(prefix + "/"):
                return str(folder / value[len(prefix) :].lstrip("/"))
    return value


def load_preset(name: str) -> dict[str, Any]:
    return yaml.safe_load((PRESETS / "synthetic" / f"{name}.yaml").read_text())


def preset_config(
    name: str,
    *,
    task_dir: Path,
    runs_root: Path,
    output_dir: Path,
    seed: int,
    samples: int = 4,
    overrides: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
) -> tuple[str, dict[str, Any]]:
    """(method name, raw config) of the synthetic preset ``name`` with ``overrides`` merged in,
    its task at ``task_dir``, its other `runs/...` paths under ``runs_root`` and its run
    folder at ``output_dir``. A preset names its method with `method_name` (else its file)."""
    raw = load_preset(name)
    for dotted in drop:
        *parents, leaf = dotted.split(".")
        node = raw
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)
    raw = merge(raw, overrides or {})
    raw = rebase(raw, {PRESET_TASK: task_dir, PRESET_ROOT: runs_root})
    raw = merge(raw, {"eval": {"seed": seed, "samples": samples}})
    raw["training"].update(output_dir=str(output_dir), seed=seed, disable_tqdm=True)
    return raw.pop("method_name", name), raw


def row_config(row: Row, out: Path, seed: int, samples: int) -> tuple[str, dict[str, Any]]:
    """(method name, raw config) of one row inside the quickstart folder ``out``."""
    return preset_config(
        row.preset,
        task_dir=out / "task",
        runs_root=out,
        output_dir=out / row.folder,
        seed=seed,
        samples=samples,
        overrides=row.overrides,
        drop=row.drop,
    )


def job_order() -> list[Row]:
    """Every row, longest first, each after the rows it needs."""
    first = [r for name in ORDER for r in ROWS if r.folder == name]
    return first + [r for r in ROWS if r not in first]
