"""The quickstart's Markdown tables: policies, reward models, AfD's best-of-N, FRFT's arms."""

from __future__ import annotations

from typing import Any

COLUMNS = (
    ("gold return", "gold_return", "{:.3f}"),
    ("± se", "gold_return_se", "{:.3f}"),
    ("norm. score", "normalised_score", "{:+.3f}"),
    ("KL(π‖π_ref)", "kl_ref", "{:.3f}"),
    ("KL(π‖π*)", "kl_expert", "{:.3f}"),
    ("distinct-2", "distinct_2", "{:.3f}"),
    ("self-BLEU", "self_bleu", "{:.3f}"),
    ("entropy", "entropy", "{:.3f}"),
)
RM_COLUMNS = (
    ("pairwise acc.", "pairwise_accuracy", "{:.3f}"),
    ("Spearman", "spearman", "{:.3f}"),
    ("recovery (raw)", "recovery_spearman_raw", "{:+.3f}"),
    ("recovery (shaped)", "recovery_spearman_shaped", "{:+.3f}"),
)


def markdown_table(rows: list[tuple[str, dict]], columns=COLUMNS, first: str = "policy") -> str:
    head = f"| {first} | " + " | ".join(c[0] for c in columns) + " |"
    sep = "|---|" + "---:|" * len(columns)
    body = [
        "| " + label + " | " + " | ".join(fmt.format(m[key]) for _, key, fmt in columns) + " |"
        for label, m in rows
    ]
    return "\n".join([head, sep, *body])


def afd_table(res: dict[str, Any]) -> str:
    """Normalised score per ranker and N on AfD's shared pool, with held-out accuracy."""
    curves = res["best_of_n"]["curves"]
    grid = [p["n"] for p in next(iter(curves.values()))]
    head = "| ranker | " + " | ".join(f"N={n}" for n in grid) + " | held-out acc. |"
    lines = [head, "|---|" + "---:|" * (len(grid) + 1)]
    for name, points in curves.items():
        acc = res["reward_models"].get(name, {}).get("heldout_accuracy")
        cells = [f"{p['normalised_score']:+.3f}" for p in points]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {'' if acc is None else f'{acc:.3f}'} |"
        )
    return "\n".join(lines)


def frft_table(res: dict[str, Any]) -> str:
    """FRFT and its two baselines: normalised score per round and the refit RM's accuracy."""
    rounds_n = max(len(rounds) for rounds in res["arms"].values())
    head = " | ".join(f"norm. score after round {k + 1}" for k in range(rounds_n))
    lines = [f"| arm | {head} | RM acc. on aligned pairs |", "|---|" + "---:|" * (rounds_n + 1)]
    for arm, rounds in res["arms"].items():
        scores = [f"{r['gold']['normalised_score']:+.3f}" for r in rounds]
        accs = [r.get("rm_metrics", {}).get("refit_accuracy_aligned") for r in rounds]
        acc = " / ".join(f"{a:.3f}" for a in accs if a is not None) or "(fixed RM)"
        lines.append(f"| {arm} | " + " | ".join(scores) + f" | {acc} |")
    return "\n".join(lines)


def full_table(policies, reward_models, afd: dict, frft: dict) -> str:
    text = markdown_table(policies) + "\n\nReward models on the held-out preference pairs:\n\n"
    text += markdown_table(reward_models, RM_COLUMNS, "reward model")
    text += "\n\nAfD best-of-N of π_SFT samples (normalised score; N=1 is π_SFT itself):\n\n"
    text += afd_table(afd)
    text += "\n\nFRFT from π_SFT (normalised score; vanilla = fixed pooled RM, random = refit on a "
    text += "random subset of the same size):\n\n" + frft_table(frft)
    return text
