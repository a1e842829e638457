"""The synthetic-task evaluation of a loop's policy: the task's metrics, the KL-regularised
objective J(π) and the fraction of the gap to the optimum closed since the start,
gap_closed = (J(π) − J(π₀)) / (J* − J(π₀))."""

from __future__ import annotations

from typing import Any

from irlalign.modeling.forward import unwrap

START_KEY = "objective_start"  # J(π₀) in `LoopState.extra`: measured once, kept across resumes
CURVE_KEYS = (
    "gold_return",
    "normalised_score",
    "objective",
    "gap_closed",
    "kl_ref",
    "kl_expert",
    "self_bleu",
    "distinct_2",
)


def evaluate_policy(task_dir: str | None, policy, tokenizer, samples: int, seed: int) -> dict:
    """Synthetic-task metrics of the in-memory policy ({} without a task)."""
    if not task_dir:
        return {}
    from irlalign.synthetic.runner import eval_policy_model

    model = unwrap(policy)
    was_training = model.training
    side = tokenizer.padding_side
    try:
        return eval_policy_model(task_dir, model.eval(), tokenizer, samples, seed)
    finally:
        model.train(was_training)
        tokenizer.padding_side = side


def evaluate(ctx: Any) -> dict[str, Any]:
    """`evaluate_policy` of the loop's current policy plus `gap_closed` (a `LoopContext`)."""
    ev = ctx.cfg.eval
    res = evaluate_policy(ctx.task_dir, ctx.policy, ctx.tokenizer, ev.samples, ev.seed)
    if res and START_KEY not in ctx.state.extra:
        ctx.state.extra[START_KEY] = res["objective"]  # the first evaluation is of π₀
    if res:
        from irlalign.synthetic.evaluate import gap_closed

        start = ctx.state.extra[START_KEY]
        res.update(objective_start=start)
        res["gap_closed"] = gap_closed(res["objective"], start, res["optimal_objective"])
    return res
