"""Model cards and the Hub: every final checkpoint gets a `README.md` saying what it is (method
and paper, base model, data, hyper-parameters, final metrics, framework versions, how to load
it), and `training.push_to_hub: true` uploads that folder to `training.hub_model_id`.

The card is written from what the run records (its `RunConfig`, the results that go into
`eval.json`, the `eval_*` lines of `metrics.jsonl`), so it says nothing the run did not measure.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from irlalign.config import RunConfig
from irlalign.errors import root_cause
from irlalign.paths import hub_id

CARD = "README.md"
# method -> (what it is, arXiv id of its paper or None)
PAPERS: dict[str, tuple[str, str | None]] = {
    "sft": ("supervised fine-tuning (maximum likelihood on demonstrations)", None),
    "iqlearn": ("IQLearn for language models (Wulfmeier et al. 2024)", "2409.01369"),
    "reward": ("Bradley–Terry reward model (as in Ouyang et al. 2022)", "2203.02155"),
    "dpo": ("Direct Preference Optimisation (Rafailov et al. 2023)", "2305.18290"),
    "ava": ("AVA, approximated variational Bayesian IRL (Cai et al., AAAI 2025)", "2411.09341"),
    "preference_transformer": ("Preference Transformer (Kim et al., ICLR 2023)", "2303.00957"),
    "rloo": ("RLOO, REINFORCE leave-one-out (Ahmadian et al. 2024)", "2402.14740"),
    "ppo": ("PPO, proximal policy optimisation (Schulman et al. 2017)", "1707.06347"),
    "afd": ("AfD, alignment from demonstrations (Sun & van der Schaar 2024)", "2405.15624"),
    "frft": ("FRFT, filtered reward fine-tuning (Krishna & Sahoo 2024)", "2412.10529"),
    "demo_rl": ("demonstrations → a dense reward learned from them → RLOO/PPO", None),
    "adversarial": ("adversarial IRL rounds, GAIL/AIRL (Ho & Ermon 2016)", "1606.03476"),
}
VERSIONS = ("irlalign", "torch", "transformers", "accelerate", "datasets", "trl", "peft")
# `training` keys that are bookkeeping, not hyper-parameters.
NOT_HYPER = {
    "output_dir",
    "overwrite_output_dir",
    "resume_from_checkpoint",
    "disable_tqdm",
    "report_to",
    "logging_steps",
    "save_steps",
    "save_total_limit",
    "push_to_hub",
    "hub_model_id",
    "hub_private_repo",
    "hub_token",
}


class HubPushError(ValueError):
    """The final folder could not be uploaded (Hub unreachable, no access); it is saved locally."""


def write_card(
    folder: str | Path,
    cfg: RunConfig,
    results: Mapping[str, Any],
    roles: Sequence[str] = ("policy",),
    which: str | None = None,
) -> Path:
    """Write `folder/README.md` for the final checkpoint of ``cfg``'s run; ``roles``: what the
    checkpoint is used as ("policy", "reward"); ``which``: for a pipeline, which of the models
    it trained this one is."""
    folder = Path(folder)
    repo = cfg.training.get("hub_model_id") if cfg.training.get("push_to_hub") else None
    text = card_text(folder, cfg, results, roles, repo, which)
    (folder / CARD).write_text(text, encoding="utf-8")
    return folder / CARD


def card_text(
    folder: Path,
    cfg: RunConfig,
    results: Mapping[str, Any],
    roles: Sequence[str],
    repo: str | None = None,
    which: str | None = None,
) -> str:
    what, arxiv = PAPERS.get(cfg.method_name, (f"irlalign method '{cfg.method_name}'", None))
    paper = f" — [arXiv {arxiv}](https://arxiv.org/abs/{arxiv})" if arxiv else ""
    # A pipeline's model lives in one of its phases' folders: the pipeline's run names it.
    title = cfg.run_dir.name if which else folder.parent.parent.name or folder.name
    parts = [
        _front_matter(cfg, roles, arxiv),
        f"# {title}: {cfg.method_name} (irlalign)\n",
        f"Trained with irlalign: {what}{paper}.\n",
        *([f"## Which model this is\n\n{which}\n"] if which else []),
        "## Base model and data\n",
        _inputs(cfg, results),
        "## Hyper-parameters\n",
        _table(_hyper_parameters(cfg)),
        "## Final metrics\n",
        _metrics(cfg.run_dir, results),
        "## Framework versions\n",
        _table({name: v for name in VERSIONS if (v := _version(name))}),
        "## Usage\n",
        _usage(repo or str(folder), roles, (folder / "adapter_config.json").exists(), bool(repo)),
    ]
    return "\n".join(parts)


def _front_matter(cfg: RunConfig, roles: Sequence[str], arxiv: str | None) -> str:
    import yaml

    meta: dict[str, Any] = {
        "library_name": "transformers",
        "tags": ["irlalign", cfg.method_name, *(["reward-model"] if "reward" in roles else [])],
    }
    if "policy" in roles:
        meta["pipeline_tag"] = "text-generation"
    base = hub_id(cfg.model.path)
    if base:
        meta["base_model"] = base
    datasets = [d for d in (hub_id(cfg.data.train), hub_id(cfg.data.eval or "")) if d]
    if datasets:
        meta["datasets"] = datasets
    if arxiv:
        meta["tags"].append(f"arxiv:{arxiv}")
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n"


def _inputs(cfg: RunConfig, results: Mapping[str, Any]) -> str:
    d = cfg.data
    rows = {
        "base model": f"`{cfg.model.path}`" + (" (LoRA adapter)" if cfg.model.lora else ""),
        "training data": f"`{d.train}` (split `{d.split}`)",
    }
    if d.eval:
        rows["held-out data"] = f"`{d.eval}` (split `{d.eval_split}`)"
    if cfg.reference is not None:
        rows["reference model"] = f"`{cfg.reference.path}`"
    reward = getattr(cfg.method_config, "reward_model", None)
    if isinstance(reward, str):
        rows["reward model"] = f"`{reward}`"
    fmt = results.get("data_format")
    if isinstance(fmt, Mapping):
        style = "conversations (chat template)" if fmt.get("conversational") else "plain text"
        rows["data format"] = f"{fmt.get('kind')}, {style}"
    counts = results.get("data")
    if isinstance(counts, Mapping) and "data/kept" in counts:
        rows["rows trained on"] = f"{counts['data/kept']} of {counts.get('data/rows')}"
    return _table(rows)


def _hyper_parameters(cfg: RunConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    method = cfg.method_config
    if dataclasses.is_dataclass(method):
        out.update(_flat(dataclasses.asdict(method), "method"))
    out.update(_flat({k: v for k, v in cfg.training.items() if k not in NOT_HYPER}, "training"))
    for key in ("max_length", "max_prompt_length", "truncation"):
        out[f"data.{key}"] = getattr(cfg.data, key)
    if cfg.model.lora:
        out["model.lora"] = cfg.model.lora
    return out


def _flat(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Nested sections as dotted keys (`method.sampling.temperature`), as overrides name them."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{prefix}.{key}"))
        else:
            out[f"{prefix}.{key}"] = value
    return out


def final_eval_metrics(run_dir: Path) -> dict[str, float]:
    """The last held-out evaluation a `Trainer` method logged (`eval_*` keys of
    `metrics.jsonl`); empty when it logged none."""
    path = Path(run_dir) / "metrics.jsonl"
    found: dict[str, float] = {}
    if not path.is_file():
        return found
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a torn last line of an interrupted run
            continue
        evals = {k: v for k, v in row.items() if k.startswith("eval_") and _number(v)}
        if evals:
            found = {"step": row.get("step"), **evals}
    return found


def _metrics(run_dir: Path, results: Mapping[str, Any]) -> str:
    rows: dict[str, Any] = {}
    for key in ("synthetic", "synthetic_rm"):
        block = results.get(key)
        if isinstance(block, Mapping):
            rows.update({f"{key}/{k}": v for k, v in block.items() if _number(v)})
    rows.update({f"held-out/{k}": v for k, v in final_eval_metrics(run_dir).items()})
    if "steps" in results:
        rows["steps"] = results["steps"]
    if not rows:
        return "The run recorded no evaluation (no `data.eval`, no `eval.synthetic_task`).\n"
    return _table(rows)


def _usage(where: str, roles: Sequence[str], adapter: bool, on_hub: bool) -> str:
    blocks = []
    if "policy" in roles:
        if adapter:
            load = f'model = AutoPeftModelForCausalLM.from_pretrained("{where}")'
            head = (
                "from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer"
            )
        else:
            load = f'model = AutoModelForCausalLM.from_pretrained("{where}")'
            head = "from transformers import AutoModelForCausalLM, AutoTokenizer"
        blocks.append(f'{head}\n\n{load}\ntokenizer = AutoTokenizer.from_pretrained("{where}")')
    if "reward" in roles:
        path = f'snapshot_download("{where}")' if on_hub else f'"{where}"'
        head = "from huggingface_hub import snapshot_download\n" if on_hub else ""
        blocks.append(
            f"{head}import irlalign\n\nrm = irlalign.load_reward_model({path})\n"
            "rm.score(prompts, responses)          # one score per response\n"
            "rm.token_rewards(prompts, responses)  # per-token rewards"
        )
    return "\n".join(f"```python\n{b}\n```\n" for b in blocks)


def _table(rows: Mapping[str, Any]) -> str:
    lines = ["| name | value |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in rows.items()]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# ---- the Hub


def check_push(push_to_hub: Any, hub_model_id: Any, section: str = "training") -> None:
    """`push_to_hub: true` needs the repository to push to; checked before anything trains."""
    if push_to_hub and not hub_model_id:
        raise ValueError(
            f"{section}.hub_model_id: required with {section}.push_to_hub: true (the Hub "
            "repository to create or update, e.g. 'your-name/my-model')"
        )


def push_folder(
    folder: str | Path, repo_id: str, private: bool | None = None, token: str | None = None
) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` (card included) to it; returns the
    repository's URL. Any failure is one `HubPushError` line; the folder stays on disk."""
    import huggingface_hub

    try:
        huggingface_hub.create_repo(repo_id, private=private, token=token, exist_ok=True)
        huggingface_hub.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            commit_message="Upload final checkpoint (irlalign)",
            token=token,
        )
    except Exception as err:  # offline, unreachable, no write access, bad repository name
        raise HubPushError(
            f"training.push_to_hub: pushing {folder} to {repo_id} failed ({root_cause(err)}); "
            f"the checkpoint is saved there, upload it later with `hf upload {repo_id} {folder}`"
        ) from None
    return f"https://huggingface.co/{repo_id}"


def publish(
    cfg: RunConfig,
    results: dict[str, Any],
    roles: Sequence[str],
    record: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """The end of a run: a card in each final folder (`final_checkpoint`, `merged_checkpoint`),
    ``record(results)`` (the run's `eval.json`), then with `training.push_to_hub` the upload of
    `final_checkpoint`, recorded again with its `hub_url`. A failed upload raises after the run
    is recorded: the run is complete on disk either way."""
    folders = [results[k] for k in ("final_checkpoint", "merged_checkpoint") if results.get(k)]
    for folder in folders:
        write_card(folder, cfg, results, roles)
    results["model_card"] = str(Path(folders[0]) / CARD)
    record(results)
    training = cfg.training
    if training.get("push_to_hub"):
        check_push(True, training.get("hub_model_id"))
        results["hub_url"] = push_folder(
            folders[0],
            training["hub_model_id"],
            training.get("hub_private_repo"),
            training.get("hub_token"),
        )
        record(results)
    return results


def check_pipeline_push(training: Mapping[str, Any], policy: str | None, why: str) -> None:
    """A pipeline asked to push with no policy of its own to push fails before it trains;
    ``policy`` is the model it will push (None: none), ``why`` says why there is none."""
    check_push(training.get("push_to_hub"), training.get("hub_model_id"))
    if training.get("push_to_hub") and policy is None:
        raise ValueError(f"training.push_to_hub: {why}; there is no trained policy to push")


def phase_folder(policy: str | Path, run_dir: Path) -> str:
    """``policy``'s folder inside the pipeline's run folder, as the card names it."""
    try:
        return str(Path(policy).resolve().relative_to(Path(run_dir).resolve()))
    except ValueError:  # a model from outside the run (given in the config)
        return str(policy)


def publish_pipeline(
    cfg: RunConfig,
    results: dict[str, Any],
    policy: str,
    which: str,
    record: Callable[[dict[str, Any]], None],
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The end of a pipeline (AfD, FRFT, demo_rl, adversarial rounds), which trains several
    models: with `training.push_to_hub`, its final policy ``policy`` gets a card for the
    pipeline (its config, and ``which`` phase's model it is, with that model's gold
    ``metrics``) and is uploaded; ``record(results)`` then notes the pushed folder and its
    `hub_url`. Without `push_to_hub` nothing changes: each phase's folder keeps its own card."""
    training = cfg.training
    if not training.get("push_to_hub"):
        return results
    check_push(True, training.get("hub_model_id"))
    shown = {"synthetic": metrics} if metrics else {}
    results["model_card"] = str(write_card(policy, cfg, shown, ("policy",), which))
    results["pushed_checkpoint"] = str(policy)
    record(results)
    results["hub_url"] = push_folder(
        policy,
        training["hub_model_id"],
        training.get("hub_private_repo"),
        training.get("hub_token"),
    )
    record(results)
    return results


# ---- what a reward model was trained on


def recorded_data_format(model_folder: str | Path) -> Mapping[str, Any] | None:
    """The data format recorded by the run that wrote ``model_folder`` (a `checkpoints/final`
    of an irlalign run: its `eval.json` holds `data_format`, or the run folder itself); None
    when not recorded."""
    from irlalign.modeling.adapters import checkpoint_folder

    folder = Path(checkpoint_folder(model_folder))
    if folder.parent.name != "checkpoints":
        return None
    path = folder.parent.parent / "eval.json"
    try:
        fmt = json.loads(path.read_text()).get("data_format")
    except (OSError, ValueError, AttributeError):
        return None
    return fmt if isinstance(fmt, Mapping) else None
