"""`irlalign quickstart`: build the synthetic benchmark, evaluate the oracle policies, train
every row of `plan.ROWS` two at a time, and write one comparison table, the run folder and its
HTML report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from irlalign.demo import plan, render

# What each kind of row reports from its run's results.
RESULT_KEY = {"policy": "synthetic", "reward_model": "synthetic_rm", "online": "synthetic"}


def train_row(row: plan.Row, out: str, seed: int, samples: int) -> Any:
    """One row in a worker process (one torch thread: the rows run side by side); its output
    lines start with `[<row folder>] `."""
    from irlalign.demo.logs import label_output

    label_output(row.folder)
    import torch
    import transformers
    from datasets.utils.logging import disable_progress_bar

    from irlalign.methods import resolve, train

    torch.set_num_threads(1)
    disable_progress_bar()
    # A classifier built from a causal LM reports its new score head at warning level: expected.
    transformers.logging.set_verbosity_error()
    method_name, raw = plan.row_config(row, Path(out), seed, samples)
    # The demo always runs every row afresh: a rerun into the same folder replaces its rows.
    raw["training"]["overwrite_output_dir"] = True
    results = train(resolve(method_name, raw))
    return results[RESULT_KEY[row.kind]] if row.kind in RESULT_KEY else results


def run_quickstart(out: str, seed: int = 0, workers: int = 2, samples: int = 4) -> str:
    """Everything `irlalign quickstart` does; returns the table's text."""
    from datasets.utils.logging import disable_progress_bar

    from irlalign.demo.schedule import run_jobs
    from irlalign.runs import RunFolder
    from irlalign.synthetic.build import build
    from irlalign.synthetic.config import SyntheticConfig
    from irlalign.synthetic.runner import eval_policy, init_kl

    disable_progress_bar()
    start = time.perf_counter()
    run_dir = RunFolder(out)
    config = SyntheticConfig(seed=seed)
    run_dir.write_config({"synthetic": config.to_dict(), "samples": samples})
    run_dir.write_env(seed)
    task_dir = Path(out) / "task"
    print(f"building the synthetic benchmark in {task_dir} …", flush=True)
    summary = build(task_dir, config)
    policies = []
    for label, spec in plan.ORACLE_ROWS:
        policy = spec if spec.startswith("oracle:") else str(task_dir / spec)
        metrics = eval_policy(task_dir, policy, samples, seed)
        run_dir.log_metrics({"row": label, **metrics})
        policies.append((label, metrics))
    jobs = [(r.folder, r.needs, (r, out, seed, samples)) for r in plan.job_order()]
    labels = {r.folder: r.label for r in plan.ROWS}
    done = run_jobs(
        jobs, train_row, workers, lambda k: print(f"training {labels[k]} …", flush=True)
    )
    by_kind = {
        kind: [(r.label, done[r.folder]) for r in plan.ROWS if r.kind == kind]
        for kind in RESULT_KEY
    }
    for label, metrics in by_kind["policy"] + by_kind["online"]:
        run_dir.log_metrics({"row": label, **metrics})
        policies.append((label, metrics))
    for label, metrics in by_kind["reward_model"]:
        run_dir.log_metrics({"reward_model": label, **metrics})
    afd, frft = done["afd"], done["frft"]
    table = render.full_table(policies, by_kind["reward_model"], afd, frft)
    kl_tok = init_kl(task_dir)
    gap = summary["expert_return"] - summary["ref_return"]
    se = policies[0][1]["gold_return_se"]
    notes = [
        f"π_init per-token KL(π_ref‖π_init) on held-out text: {kl_tok:.4f} nats",
        f"exact R(π*) − R(π_ref) on the eval prompts: {gap:.3f} = {gap / se:.1f} standard "
        f"errors of the π_ref row ({policies[0][1]['n_samples']} samples)",
        f"wall time: {time.perf_counter() - start:.1f} s",
    ]
    text = table + "\n\n" + "\n".join("- " + n for n in notes) + "\n"
    (Path(out) / "table.md").write_text(text)
    run_dir.write_eval(
        {
            "rows": dict(policies),
            "reward_models": dict(by_kind["reward_model"]),
            "afd": afd,
            "frft": frft,
            "init_kl_per_token": kl_tok,
            "task": summary,
        }
    )
    from irlalign.report import write_report

    # Reads only the run files just written: about ten seconds of plotting, no model.
    write_report([out], Path(out) / "report.html", title="irlalign quickstart")
    return text
