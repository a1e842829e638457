"""Running a `transformers.Trainer` method from a `RunConfig`: data, models, trainer, the final
checkpoint (and a merged one for LoRA), the synthetic evaluation and the run folder's files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from irlalign.config import RunConfig
from irlalign.guard import FiniteGuard
from irlalign.modeling.forward import unwrap
from irlalign.modeling.load import frozen_copy, load_model, load_tokenizer
from irlalign.trackers import reported, tracker_dir, trainer_trackers
from irlalign.trainers.arguments import strategy_words, trainer_fields

# `training` keys the library reads for the upload of the final folder, kept from transformers.
HUB_KEYS = ("push_to_hub", "hub_model_id", "hub_private_repo", "hub_token")


def load_split(cfg: RunConfig, spec, tokenizer, source: str, split: str, max_rows: int | None):
    """Load, validate (file/row/field errors before training) and tokenise one split."""
    return _tokenized(cfg, tokenizer, *checked_rows(cfg, spec, source, split, max_rows))


def checked_rows(cfg: RunConfig, spec, source: str, split: str, max_rows: int | None):
    """The rows of one split, validated, with their format and their name in errors."""
    from irlalign.data.formats import check_dataset
    from irlalign.data.loading import load_rows

    # Rows holding both `messages` and pairs (UltraFeedback) are pairs for a preference method.
    rows = load_rows(source, split, prefer=spec.data_kind)
    if max_rows is not None:
        rows = rows.select(range(min(max_rows, len(rows))))
    where = f"{source} [{split}]"
    fmt = check_dataset(rows, where).fmt
    got = "preference" if fmt.kind == "preference" else "demonstrations"
    if spec.data_kind not in (got, "any"):
        raise ValueError(
            f"{where}: method '{cfg.method_name}' needs {spec.data_kind} data, got {fmt.kind}"
        )
    return rows, fmt, where


def _tokenized(cfg: RunConfig, tokenizer, rows, fmt, where: str):
    from irlalign.data.tokenize import Truncation, tokenize_dataset

    trunc = Truncation(cfg.data.max_length, cfg.data.max_prompt_length, cfg.data.truncation)
    return tokenize_dataset(
        rows, tokenizer, trunc, cfg.data.add_special_tokens, cfg.data.append_eos, where, fmt
    )


def training_arguments(cfg: RunConfig):
    """`TrainingArguments` from the `training` section, with the library's defaults; returns
    them, the `resume_from_checkpoint` value (a `Trainer.train` argument, not an option) and
    the finite guard (`skip_nonfinite_steps`, the library's own key)."""
    from transformers import TrainingArguments

    kwargs = {
        # A NaN loss is logged as NaN (transformers would log the running mean instead); the
        # finite guard stops the run before such a step changes the weights.
        "logging_nan_inf_filter": False,
        "report_to": "none",
        "logging_steps": 10,
        "save_strategy": "steps",
        "save_steps": 500,
        "save_total_limit": 2,
        # The methods call their heads (reward, value, Q) on the hidden states outside the
        # model's forward. With unused-parameter search on, DDP marks those parameters ready
        # when the forward ends and again when backward reaches them, and the step fails.
        "ddp_find_unused_parameters": False,
        "disable_tqdm": False,
        **eval_defaults(cfg),
        **strategy_words(cfg.training),
    }
    kwargs["output_dir"] = str(cfg.run_dir / "checkpoints")
    # The library pushes `checkpoints/final` with its card once the run is done
    # (`irlalign.cards.publish`); transformers would push `checkpoints/` at every save.
    for key in HUB_KEYS:
        kwargs.pop(key, None)
    if "logging_dir" in trainer_fields():  # transformers 4: its TensorBoard folder
        kwargs.setdefault("logging_dir", str(tracker_dir(cfg.run_dir)))
    kwargs["remove_unused_columns"] = False  # completion masks are not model inputs
    kwargs.setdefault("label_names", [])
    resume = kwargs.pop("resume_from_checkpoint", None)
    kwargs.pop("overwrite_output_dir", None)  # the library's own key, applied by `methods.train`
    skips = int(kwargs.pop("skip_nonfinite_steps", 0))
    kwargs.pop("overwrite_output_dir", None)  # the run folder's key, unknown to transformers
    guard = FiniteGuard(skips, f" under {kwargs['output_dir']}")
    return TrainingArguments(**kwargs), resume, guard


def eval_defaults(cfg: RunConfig) -> dict[str, Any]:
    """With `data.eval` and no `eval_strategy`, evaluate every `eval_steps` (transformers'
    default for them: `logging_steps`) and after the last step, which transformers adds to a
    "steps" run. TRL evaluates only when asked, but a held-out file given and never read would
    be a silent no-op; `eval_strategy: "no"` keeps it unread (it is still validated)."""
    if cfg.data.eval and "eval_strategy" not in cfg.training:
        return {"eval_strategy": "steps"}
    return {}


def check_eval_data(cfg: RunConfig) -> None:
    """An evaluation strategy needs a held-out set; transformers would say so only after the
    model has loaded."""
    strategy = strategy_words(cfg.training).get("eval_strategy", "no")
    if strategy != "no" and not cfg.data.eval:
        raise ValueError(
            f"training.eval_strategy: '{strategy}' needs held-out data; set data.eval "
            "(or eval_strategy: 'no')"
        )


def data_kind_of(dataset) -> str:
    """What a tokenised dataset holds (methods with data_kind "any" accept both)."""
    return "preference" if "chosen_input_ids" in dataset.column_names else "demonstrations"


def build_trainer(cfg: RunConfig, spec, tokenizer, train_ds, eval_ds):
    from transformers import set_seed

    from irlalign.data.collate import collator_for
    from irlalign.trainers.common import FiniteGradCallback, JsonlMetricsCallback

    args, resume, guard = training_arguments(cfg)
    # Seed before loading: freshly initialised heads (a classifier's score layer, the trainers'
    # extra heads) must not depend on what ran earlier in the same process.
    set_seed(args.seed)
    model = load_model(cfg.model, kind=spec.model_kind)
    extra = {}
    if spec.needs_reference:
        ref = load_model(cfg.reference) if cfg.reference else frozen_copy(unwrap(model))
        extra["ref_model"] = ref
    trainer = spec.runner_object()(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=collator_for(data_kind_of(train_ds), tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=[JsonlMetricsCallback(cfg.run_dir / "metrics.jsonl"), FiniteGradCallback(guard)],
        method=cfg.method_config,
        **extra,
    )
    return trainer, resume


def train_with_trainer(cfg: RunConfig, spec) -> dict[str, Any]:
    """Run one `Trainer` method end to end; returns what `eval.json` holds."""
    import yaml

    from irlalign.cards import check_push
    from irlalign.runs import RunFolder

    main_process = int(os.environ.get("RANK", "0")) == 0  # under accelerate/torchrun
    check_eval_data(cfg)
    check_push(cfg.training.get("push_to_hub"), cfg.training.get("hub_model_id"))
    tokenizer = load_tokenizer(cfg.model.path, cfg.model.trust_remote_code)
    d = cfg.data
    rows, fmt, where = checked_rows(cfg, spec, d.train, d.split, d.max_rows)
    train_ds, stats = _tokenized(cfg, tokenizer, rows, fmt, where)
    eval_ds = None
    if d.eval:
        eval_ds, _ = load_split(cfg, spec, tokenizer, d.eval, d.eval_split, None)
    resume = resume_checkpoint(cfg)
    run = RunFolder(cfg.run_dir)
    if main_process:  # the config and data passed validation: the run records itself
        run.write_config(cfg.to_dict())
        run.write_env(cfg.training.get("seed", 42))
        _restart_metrics(cfg.run_dir, resume, stats.as_metrics())
    print("data:", yaml.safe_dump(stats.as_metrics(), default_flow_style=True).strip())
    with _trackers(cfg):
        trainer, _ = build_trainer(cfg, spec, tokenizer, train_ds, eval_ds)
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    results = _save_final(cfg, trainer, tokenizer)
    results["data"] = stats.as_metrics()
    # What the model saw, for whoever uses it next (an RL run warns on a chat/plain mismatch).
    results["data_format"] = {"kind": fmt.kind, "conversational": fmt.conversational}
    if cfg.eval.synthetic_task and trainer.is_world_process_zero():
        final = Path(results.get("merged_checkpoint", results["final_checkpoint"]))
        results.update(evaluate_final(cfg, spec, final))
    if trainer.is_world_process_zero():
        from irlalign.cards import publish

        publish(cfg, results, spec.evaluates, run.write_eval)
    return results


def _trackers(cfg: RunConfig):
    """Tracker files in the run folder (`irlalign.trackers`), when any tracker is asked for."""
    from contextlib import nullcontext

    wanted = reported(cfg.training.get("report_to", "none"))
    return trainer_trackers(cfg.run_dir) if wanted else nullcontext()


def resume_checkpoint(cfg: RunConfig) -> Path | None:
    """The complete `checkpoint-<n>` that `resume_from_checkpoint` names. true / "latest": the
    newest complete one in this run's `checkpoints/` (Hugging Face would take the newest folder
    even if a kill cut its save short); a path: that folder, if it is a complete checkpoint."""
    from irlalign.integrity import newest_complete, trainer_checkpoint_problem
    from irlalign.runs import wants_resume

    value = cfg.training.get("resume_from_checkpoint")
    if not wants_resume(value):
        return None
    if isinstance(value, str) and value.strip().lower() not in ("true", "latest"):
        problem = trainer_checkpoint_problem(Path(value))
        if problem:
            raise ValueError(
                f"training.resume_from_checkpoint: {value} is not a complete Trainer "
                f"checkpoint ({problem})"
            )
        return Path(value)
    return newest_complete(cfg.run_dir / "checkpoints", "checkpoint-", trainer_checkpoint_problem)


def _restart_metrics(run_dir: Path, resume: Path | None, data_stats: dict[str, Any]) -> None:
    """`metrics.jsonl` as it stood at the resumed checkpoint (later lines are logged again), or
    empty for a run that starts over; then the data counts, once, as the step-0 line."""
    import json

    from irlalign.integrity import trainer_step
    from irlalign.runs import RunFolder, truncate_metrics

    truncate_metrics(run_dir, trainer_step(resume) if resume else -1)
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    if not any(k.startswith("data/") for ln in lines if ln.strip() for k in json.loads(ln)):
        RunFolder(run_dir).log_metrics({"step": 0, **data_stats})


def _save_final(cfg: RunConfig, trainer, tokenizer) -> dict[str, Any]:
    """`checkpoints/final` (for LoRA the adapter, what peft users expect) and, for LoRA,
    `checkpoints/final_merged`, a plain checkpoint every consumer can load."""
    from irlalign.modeling.heads import save_pretrained_with_heads

    final = cfg.run_dir / "checkpoints" / "final"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(final)
    results: dict[str, Any] = {"final_checkpoint": str(final)}
    if cfg.model.lora is not None and trainer.is_world_process_zero():
        merged = cfg.run_dir / "checkpoints" / "final_merged"
        save_pretrained_with_heads(trainer.model.merge_and_unload(), merged)
        tokenizer.save_pretrained(merged)
        results["merged_checkpoint"] = str(merged)
    return results


def evaluate_final(cfg: RunConfig, spec, final: Path) -> dict[str, Any]:
    """`synthetic`: policy metrics; `synthetic_rm`: reward-model metrics on held-out pairs."""
    from irlalign.synthetic.runner import eval_policy, eval_reward_model

    task, out = cfg.eval.synthetic_task, {}
    if "policy" in spec.evaluates:
        out["synthetic"] = eval_policy(task, str(final), cfg.eval.samples, cfg.eval.seed)
    if "reward" in spec.evaluates:
        out["synthetic_rm"] = eval_reward_model(task, final)
    return out
