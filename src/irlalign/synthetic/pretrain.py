"""π_init: the tiny model pretrained by MLE on the `pretrain` dataset, cached by config hash.

A plain loop (not a library trainer) because this is part of the benchmark's fixture: it must be
deterministic, quick on two CPU cores and independent of the trainers it is used to test.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from irlalign.synthetic.datasets import pretrain_split
from irlalign.synthetic.language import Task
from irlalign.synthetic.model import build_tokenizer, tiny_model


def cache_root() -> Path:
    """`$IRLALIGN_CACHE` or `~/.cache/irlalign`."""
    return Path(os.environ.get("IRLALIGN_CACHE", Path.home() / ".cache" / "irlalign"))


def encode(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> dict[str, torch.Tensor]:
    """Right-padded ids; the texts already hold their `<bos>`/`<eos>` tokens."""
    return tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")


def _lr_at(step: int, total: int, peak: float) -> float:
    warmup = max(1, total // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def pretrain(
    model, batch: dict[str, torch.Tensor], steps: int, batch_size: int, lr: float, seed: int
) -> list[float]:
    """MLE on every non-pad token with AdamW and warm-up + cosine decay; returns the losses."""
    gen = torch.Generator().manual_seed(seed)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    labels = ids.masked_fill(mask == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for step in tqdm(range(steps), desc="pretrain π_init", leave=False):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr)
        idx = torch.randint(0, len(ids), (batch_size,), generator=gen)
        width = int(mask[idx].sum(1).max())
        out = model(
            input_ids=ids[idx, :width], attention_mask=mask[idx, :width], labels=labels[idx, :width]
        )
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(out.loss.item())
    model.eval()
    return losses


def init_policy(task: Task, root: Path | None = None) -> Path:
    """Folder of π_init (model + tokenizer), trained once per config hash and reused after."""
    cfg = task.config
    target = (root or cache_root()) / "pi_init" / cfg.pretrain_hash()
    if (target / "pretrain.json").exists():
        return target
    tokenizer = build_tokenizer(task)
    model = tiny_model(cfg, len(tokenizer), seed=cfg.seed)
    batch = encode(tokenizer, list(pretrain_split(task, "train")["text"]))
    losses = pretrain(
        model, batch, cfg.pretrain_steps, cfg.pretrain_batch_size, cfg.pretrain_lr, cfg.seed
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary sibling and rename, so a concurrent or killed run never leaves a
    # half-written cache entry behind.
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    summary = {
        "config_hash": cfg.pretrain_hash(),
        "final_loss": sum(losses[-50:]) / 50,
        "steps": cfg.pretrain_steps,
    }
    (tmp / "pretrain.json").write_text(json.dumps(summary, indent=2))
    try:
        tmp.rename(target)
    except OSError:  # another process won the race; its entry is equivalent
        shutil.rmtree(tmp, ignore_errors=True)
    return target
