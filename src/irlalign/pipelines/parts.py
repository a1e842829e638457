"""The parts AfD and the adversarial rounds are composed from: demonstrations, turn truncation,
held-out prompt splits, balanced classifier data, discriminator training and its accuracies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irlalign.generation.sampling import Rollouts


@dataclass
class Demos:
    prompts: list[str]
    completions: list[str]


def load_demos(spec: str, split: str, tokenizer, max_rows: int | None = None) -> Demos:
    """Prompt and completion strings of a demonstrations dataset (validated first); chat rows
    are rendered with the template's generation prompt, and the assistant turn's text kept."""
    from irlalign.data.formats import check_dataset
    from irlalign.data.loading import load_rows

    rows = load_rows(spec, split)
    if max_rows is not None:
        rows = rows.select(range(min(max_rows, len(rows))))
    fmt = check_dataset(rows, f"{spec} [{split}]").fmt
    if fmt.kind == "preference":
        raise ValueError(f"{spec} [{split}]: AfD needs demonstrations, got preference pairs")
    if not fmt.conversational:
        return Demos(list(rows["prompt"]), list(rows["completion"]))
    if fmt.kind == "messages":
        pairs = [(m[:-1], m[-1]["content"]) for m in rows["messages"]]
    else:
        pairs = [
            (p, c[-1]["content"]) for p, c in zip(rows["prompt"], rows["completion"], strict=True)
        ]
    render = [
        tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        for p, _ in pairs
    ]
    return Demos(render, [c for _, c in pairs])


def open_run(cfg):
    """Check the folder, load the demonstrations, then write the run folder's config and env
    (only a run that passed validation records itself); returns (run folder, seed, tokenizer,
    demos)."""
    from irlalign.modeling.load import load_tokenizer
    from irlalign.runs import RunFolder

    seed = int(cfg.training.get("seed", 42))
    run = RunFolder(cfg.run_dir)
    run.check_rounds(cfg.to_dict(), "round_*/round.json")  # adversarial rounds resume
    tokenizer = load_tokenizer(cfg.model.path, cfg.model.trust_remote_code)
    demos = load_demos(cfg.data.train, cfg.data.split, tokenizer, cfg.data.max_rows)
    run.write_config(cfg.to_dict())
    run.write_env(seed)
    return run, seed, tokenizer, demos


def truncate_turn(text: str, markers: Sequence[str]) -> str:
    """Cut at the first turn marker and strip whitespace: a sampled response that runs on into
    an invented next turn is scored on its own turn only, like the demonstrations."""
    for marker in markers:
        if marker and marker in text:
            text = text[: text.index(marker)]
    return text.strip()


def responses(rollouts: Rollouts, markers: Sequence[str]) -> list[str]:
    return [truncate_turn(r, markers) for r in rollouts.responses]


def heldout_split(n_prompts: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out prompts: whole prompts are held out, so a discriminator's
    held-out accuracy never scores a prompt it saw in training."""
    held = np.zeros(n_prompts, dtype=bool)
    k = int(round(fraction * n_prompts))
    if k:
        held[np.random.default_rng(seed).choice(n_prompts, size=k, replace=False)] = True
    return held


def classifier_rows(
    prompts: list[str], positives: list[str], negatives: list[str]
) -> tuple[list[str], list[str], list[float]]:
    """Balanced 1:1 rows: both classes answer the same prompts (positives first)."""
    if not (len(prompts) == len(positives) == len(negatives)):
        raise ValueError("each prompt needs one positive and one negative response")
    return prompts * 2, positives + negatives, [1.0] * len(prompts) + [0.0] * len(prompts)


def length_baseline_accuracy(train_len, train_lab, test_len, test_lab) -> float:
    """Held-out accuracy of the best length threshold (either direction) found on training
    rows: a discriminator that does not beat it has learned length, not quality."""
    train_len, train_lab = np.asarray(train_len, float), np.asarray(train_lab) > 0.5
    best, rule = -1.0, (0.0, True)
    for t in np.unique(train_len):
        for longer in (True, False):
            pred = train_len > t if longer else train_len <= t
            acc = float((pred == train_lab).mean())
            if acc > best:
                best, rule = acc, (t, longer)
    t, longer = rule
    test_len, test_lab = np.asarray(test_len, float), np.asarray(test_lab) > 0.5
    pred = test_len > t if longer else test_len <= t
    return float((pred == test_lab).mean()) if len(test_lab) else float("nan")


def train_classifier(
    init_path: str, tokenizer, rows, out: Path, training: dict[str, Any], seed: int
) -> Path:
    """BCE discriminator from ``init_path`` (a 1-logit sequence classifier, reward = logit)
    trained on (prompts, responses, labels); saved to ``out`` and returned."""
    from transformers import TrainingArguments, set_seed

    from irlalign.modeling.load import ModelOptions, load_model
    from irlalign.trainers.arguments import strategy_words
    from irlalign.trainers.discriminator import labelled_dataset, train_discriminator

    set_seed(seed)
    model = load_model(ModelOptions(path=init_path), kind="reward")
    data = labelled_dataset(tokenizer, *rows)
    kwargs = {"report_to": "none", "save_strategy": "no", "disable_tqdm": True, "seed": seed}
    kwargs.update(strategy_words(training))
    kwargs["output_dir"] = str(out / "trainer")
    kwargs["remove_unused_columns"] = False
    kwargs["label_names"] = ["label"]
    (out / "metrics.jsonl").unlink(missing_ok=True)  # a redone phase starts its log afresh
    model = train_discriminator(
        model, tokenizer, data, TrainingArguments(**kwargs), out / "metrics.jsonl"
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def classifier_accuracy(rm, prompts, texts, labels) -> float:
    if not prompts:
        return float("nan")
    scores = rm.score(prompts, texts)
    return float(((scores > 0) == (np.asarray(labels) > 0.5)).mean())


# What every pipeline's RL phase starts from (AfD's RL extension, each adversarial round, each
# FRFT round): the reward model's sequence score, standardised by its mean and spread on the
# starting policy's first batch (a classifier's logit has no meaningful scale of its own), and a
# KL penalty to the starting policy. The pipeline's `rl_method` / `rl_training` go on top.
RL_PHASE_METHOD = {"reward_mode": "terminal", "reward_norm": "initial", "kl_coef": 0.05}


def rl_phase(
    cfg, sampling, rl_method: dict[str, Any], rl_training: dict[str, Any], max_steps: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(method, training) sections of a pipeline's RL phase. Its responses are as long as the
    pipeline's own samples (``sampling.max_new_tokens``), or the task's horizon on a synthetic
    task, unless `rl_method.sampling` says otherwise; they are drawn from the policy itself
    (temperature 1, no top-k / top-p), since RL must train on its own samples."""
    method = {**RL_PHASE_METHOD, **rl_method}
    length = sampling.max_new_tokens
    if cfg.eval.synthetic_task:
        from irlalign.synthetic.build import load_task

        length = load_task(cfg.eval.synthetic_task).config.horizon
    method["sampling"] = {"max_new_tokens": length, **(rl_method.get("sampling") or {})}
    return method, {"max_steps": max_steps, **rl_training}


def run_rl_phase(
    cfg, run_child, rl: str, method: dict[str, Any], training: dict[str, Any], **where: Any
) -> dict[str, Any]:
    """Run a pipeline's RL phase (from `rl_phase`'s sections) in the `rl/` sub-folder, with the
    gold evaluation; ``where`` names the starting policy (`model=`) and the prompts (`data=`).
    The results come back JSON-safe (paths as strings)."""
    out = run_child(rl, cfg, folder="rl", method=method, training=training, evaluate=True, **where)
    return json.loads(json.dumps(out, default=str))
