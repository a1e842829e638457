"""How much of online IQLearn's loss and gradient comes from the policy's own samples.

Online IQLearn adds, to the expert-side loss L_E (MLE + TD on demonstration tokens, weighted
1 − α), a policy-side loss L_π (TD and value-difference terms on the current policy's samples,
weighted α). On a few training batches this script computes both sides separately on a given
checkpoint, with the preset's weights, and reports each side's share of the loss magnitude and of
the gradient norm (‖∇L_π‖ / (‖∇L_E‖ + ‖∇L_π‖)), so that "online" can be told apart from
"offline with a negligible extra term".

    python benchmarks/iqlearn_online_terms.py --task runs/quickstart/task [--model DIR]
        [--batches 5] [--set method.mix_in=0.5 ...]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", type=Path, default=Path("runs/quickstart/task"))
    p.add_argument("--model", type=Path, help="checkpoint to measure (default: the task's π_init)")
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("--set", action="append", default=[], help="section.key=value override")
    a = p.parse_args()
    import yaml

    from irlalign.config import set_nested
    from irlalign.demo.plan import preset_config
    from irlalign.losses.iqlearn import iqlearn_online_expert_loss, iqlearn_online_policy_loss
    from irlalign.methods import METHODS, resolve
    from irlalign.modeling.load import load_tokenizer
    from irlalign.trainers.run import build_trainer, load_split

    overrides: dict = {}
    for item in a.set:
        key, _, value = item.partition("=")
        set_nested(overrides, key, yaml.safe_load(value))
    name, raw = preset_config(
        "iqlearn_online",
        task_dir=a.task,
        runs_root=Path("/tmp/iq_terms"),
        output_dir=Path("/tmp/iq_terms"),
        seed=0,
        overrides=overrides,
    )
    if a.model:
        raw["model"]["path"] = str(a.model)
    cfg = resolve(name, raw)
    spec = METHODS[name]
    tok = load_tokenizer(cfg.model.path)
    ds, _ = load_split(cfg, spec, tok, cfg.data.train, cfg.data.split, None)
    trainer, _ = build_trainer(cfg, spec, tok, ds, None)
    model, m = trainer.model, cfg.method_config
    kw = {"lam": m.lam, "mix_in": m.mix_in, "gamma": m.gamma, "value_diff": m.value_diff}
    rows = []
    for i, batch in zip(range(a.batches), trainer.get_train_dataloader(), strict=False):
        torch.manual_seed(i)
        e = trainer._terms(
            model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        )
        loss_e, _ = iqlearn_online_expert_loss(
            e.logp, e.r_hat, e.v, e.v_next, e.mask, e.td_mask, **kw
        )
        s = trainer._policy_samples(model, batch)
        q = trainer._terms(model, s.input_ids, s.attention_mask, s.completion_mask)
        loss_p, _ = iqlearn_online_policy_loss(q.r_hat, q.v, q.v_next, q.mask, q.td_mask, **kw)
        norms = []
        for loss in (loss_e, loss_p):
            model.zero_grad(set_to_none=True)
            loss.backward(retain_graph=True)
            norms.append(
                float(
                    torch.sqrt(
                        sum((p.grad**2).sum() for p in model.parameters() if p.grad is not None)
                    )
                )
            )
        le, lp = abs(float(loss_e)), abs(float(loss_p))
        rows.append((le, lp, lp / (le + lp), norms[0], norms[1], norms[1] / sum(norms)))
    cols = ("|L_E|", "|L_π|", "loss share π", "‖∇L_E‖", "‖∇L_π‖", "gradient share π")
    print(
        f"\n{cfg.model.path}; mix_in α = {m.mix_in}, λ = {m.lam}, value_diff = {m.value_diff}; "
        f"median over {len(rows)} batches of {cfg.training['per_device_train_batch_size']} rows\n"
    )
    print("| " + " | ".join(cols) + " |")
    print("|" + "---:|" * len(cols))
    print(
        "| " + " | ".join(f"{statistics.median(r[i] for r in rows):.4g}" for i in range(6)) + " |"
    )


if __name__ == "__main__":
    main()
