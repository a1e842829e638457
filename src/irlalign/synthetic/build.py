"""Build a benchmark folder and load it back: `task.json`, datasets and the π_init checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from datasets import Dataset, load_from_disk

from irlalign.synthetic import oracle
from irlalign.synthetic.config import SyntheticConfig
from irlalign.synthetic.datasets import eval_prompts, write_datasets
from irlalign.synthetic.language import Task, build_task
from irlalign.synthetic.model import vocabulary
from irlalign.synthetic.pretrain import init_policy
from irlalign.synthetic.summary import data_summary
from irlalign.synthetic.text import Prompts, parse_prompt

TABLES = ("ref_words", "r_topic", "r_pair", "r_end")
FORMAT_VERSION = 1


def task_to_json(task: Task, pairs: Dataset | None = None) -> dict:
    """Everything needed to rebuild r*, π_ref and π* without re-drawing anything; with the
    training preference `pairs`, also the measured properties of the datasets."""
    ex = oracle.expert(task)
    d0 = eval_prompts(task)
    ref = task.ref_table()
    summary = {
        "expert_return": float(
            oracle.start_values(
                oracle.policy_values(ex.policy, task.reward_table()), d0.topics, d0.last_words
            ).mean()
        ),
        "ref_return": float(
            oracle.start_values(
                oracle.policy_values(ref, task.reward_table()), d0.topics, d0.last_words
            ).mean()
        ),
        "expert_kl_ref": float(
            oracle.start_values(
                oracle.policy_values(ex.policy, oracle.kl_per_step(ex.policy, ref)),
                d0.topics,
                d0.last_words,
            ).mean()
        ),
    }
    out = {
        "format_version": FORMAT_VERSION,
        "config": task.config.to_dict(),
        "vocabulary": vocabulary(task),
        "synonym_pairs": task.synonym_pairs(),
        "tables": {name: getattr(task, name).tolist() for name in TABLES},
        "eval_prompt_summary": summary,
    }
    if pairs is not None:
        out["data_summary"] = data_summary(task, d0, pairs)
    return out


def task_from_json(data: dict) -> Task:
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported task.json format_version {data.get('format_version')!r}")
    config = SyntheticConfig.from_dict(data["config"])
    tables = {name: np.asarray(data["tables"][name], dtype=np.float64) for name in TABLES}
    return Task(config=config, **tables)


def load_task(task_dir: str | Path) -> Task:
    path = Path(task_dir) / "task.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: build it with `irlalign synthetic build`")
    return task_from_json(json.loads(path.read_text()))


def load_eval_prompts(task: Task, task_dir: str | Path) -> Prompts:
    rows = load_from_disk(str(Path(task_dir) / "eval_prompts"))["prompt"]
    parsed = [parse_prompt(task, text) for text in rows]
    return Prompts(np.array([p[0] for p in parsed]), [p[1] for p in parsed])


def build(out: str | Path, config: SyntheticConfig) -> dict:
    """Write `task.json`, the datasets and `pi_init/` under `out`; return a summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    task = build_task(config)
    counts = write_datasets(task, out)
    cached = init_policy(task)
    if (out / "pi_init").exists():
        shutil.rmtree(out / "pi_init")
    shutil.copytree(cached, out / "pi_init")
    data = task_to_json(task, load_from_disk(str(out / "preferences"))["train"])
    (out / "task.json").write_text(json.dumps(data))
    return {
        "out": str(out),
        "rows": counts,
        **data["eval_prompt_summary"],
        "data_summary": data["data_summary"],
    }
