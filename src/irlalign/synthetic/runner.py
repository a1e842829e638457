"""Task-folder level entry points used by the CLI and the quickstart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer

from irlalign.modeling.reward import RewardModel
from irlalign.modeling.reward_specs import load_reward_spec
from irlalign.synthetic import evaluate
from irlalign.synthetic.build import load_eval_prompts, load_task
from irlalign.synthetic.sampling import sample_model, sample_tabular
from irlalign.synthetic.sources import policy_sources

ORACLE_PREFIX = "oracle:"


def oracle_names(task_dir: str | Path) -> list[str]:
    return [ORACLE_PREFIX + name for name in policy_sources(load_task(task_dir))]


def _sampler(task, policy: str):
    """A function (prompts, per_prompt, seed, temperature) -> Samples for a checkpoint folder or
    a tabular policy named `oracle:<name>`; the model is loaded once."""
    if policy.startswith(ORACLE_PREFIX):
        tables = policy_sources(task)
        name = policy[len(ORACLE_PREFIX) :]
        if name not in tables:
            raise ValueError(f"unknown oracle policy {name!r}; choose from {sorted(tables)}")
        return lambda prompts, n, seed, temperature=1.0: sample_tabular(
            task, tables[name], prompts, n, seed, temperature=temperature
        )
    if not (Path(policy) / "config.json").exists():
        raise FileNotFoundError(f"{policy}: not a checkpoint folder (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(policy)
    tokenizer = AutoTokenizer.from_pretrained(policy)
    return lambda prompts, n, seed, temperature=1.0: sample_model(
        model, tokenizer, task, prompts, n, seed, temperature=temperature
    )


def eval_policy(task_dir: str | Path, policy: str, samples: int = 4, seed: int = 0) -> dict:
    """Metrics of a causal-LM checkpoint folder, or of a tabular policy named `oracle:<name>`.

    `samples` responses are drawn per held-out eval prompt.
    """
    task = load_task(task_dir)
    prompts = load_eval_prompts(task, task_dir)
    drawn = _sampler(task, policy)(prompts, samples, seed)
    return {"policy": str(policy), "seed": seed, **evaluate.policy_metrics(task, prompts, drawn)}


def eval_frontier(
    task_dir: str | Path,
    policy: str,
    temperatures: Sequence[float],
    greedy: bool = False,
    samples: int = 4,
    seed: int = 0,
) -> dict:
    """`eval_policy` at each sampling temperature (and greedy decoding if asked): one row per
    decoding, each drawn with the same seed, in the order given (greedy last)."""
    if any(t <= 0 for t in temperatures):
        raise ValueError(f"temperatures must be > 0 (use greedy for T → 0), got {temperatures}")
    if not temperatures and not greedy:
        raise ValueError("nothing to evaluate: give temperatures or greedy")
    task = load_task(task_dir)
    prompts = load_eval_prompts(task, task_dir)
    sample = _sampler(task, policy)
    rows = []
    for temperature in [*temperatures, *([0.0] if greedy else [])]:
        drawn = sample(prompts, samples, seed, temperature)
        rows.append(evaluate.frontier_row(task, prompts, drawn, temperature))
    return {
        "policy": str(policy),
        "task": str(task_dir),
        "seed": seed,
        "samples": samples,
        "rows": rows,
    }


def eval_policy_model(task_dir: str | Path, model, tokenizer, samples: int = 4, seed: int = 0):
    """`eval_policy` for a model already in memory (curves during online training)."""
    task = load_task(task_dir)
    prompts = load_eval_prompts(task, task_dir)
    drawn = sample_model(model, tokenizer, task, prompts, samples, seed)
    return {"seed": seed, **evaluate.policy_metrics(task, prompts, drawn)}


def eval_reward_model(task_dir: str | Path, rm: str | Path | RewardModel) -> dict:
    """RM quality on the held-out preference split (`preferences/test`)."""
    model = rm if isinstance(rm, RewardModel) else load_reward_spec(str(rm))
    prefs = load_from_disk(str(Path(task_dir) / "preferences"))["test"]
    out = evaluate.reward_model_metrics(prefs, model.score)
    # Reward recovery on the same held-out responses, chosen and rejected alike.
    prompts = list(prefs["prompt"]) * 2
    responses = list(prefs["chosen"]) + list(prefs["rejected"])
    learned = [row.rewards for row in model.token_rewards(prompts, responses)]
    out.update(evaluate.reward_recovery(load_task(task_dir), prompts, responses, learned))
    return out


def init_kl(task_dir: str | Path) -> float:
    """Per-token KL(π_ref ‖ π_init) on the held-out pretraining text of the task."""
    task = load_task(task_dir)
    folder = Path(task_dir) / "pi_init"
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = list(load_from_disk(str(Path(task_dir) / "pretrain"))["test"]["text"])
    return evaluate.reference_kl(model, tokenizer, task, texts)
