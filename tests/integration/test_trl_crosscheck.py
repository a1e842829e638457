"""Cross-check against TRL 1.16: on TRL's own first training batch, our SFT, Bradley–Terry and
DPO losses equal the loss TRL's trainer computes for it, within 1e-5.

Each test builds TRL's trainer on a few synthetic rows, takes ``next(iter(get_train_dataloader()))``
and ``trainer.compute_loss`` on it, then feeds exactly the same token ids and masks (re-keyed to our
layout) to our trainer's ``compute_loss`` with the same model. Settings that make the definitions
agree: SFT ``completion_only_loss=True``, no packing / padding-free (TRL's loss is then Σ −log p
over response tokens / their count in the batch, like ours with ``num_items=None``); reward: no
``center_rewards_coefficient`` and no margin column (plain −mean log σ(r_c − r_r)); DPO ``sigmoid``
loss, β = 0.1, no label smoothing, no ``ld_alpha`` / weighting, reference log-probs computed on the
fly (sequence log-prob = sum over completion tokens on both sides). ``max_length=None``
everywhere so nothing is truncated. Completions already end with ``<eos>``, so TRL adds
no second EOS (checked).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

trl = pytest.importorskip("trl")

from transformers import (  # noqa: E402
    LlamaConfig,
    LlamaForSequenceClassification,
    TrainingArguments,
)

from irlalign.synthetic.config import SyntheticConfig  # noqa: E402
from irlalign.synthetic.datasets import demos_split, preferences_split  # noqa: E402
from irlalign.synthetic.language import build_task  # noqa: E402
from irlalign.synthetic.model import build_tokenizer, tiny_model  # noqa: E402
from irlalign.trainers.dpo import DPOConfig, DPOTrainer  # noqa: E402
from irlalign.trainers.reward import RewardTrainer  # noqa: E402
from irlalign.trainers.sft import SFTTrainer  # noqa: E402

N_ROWS = 8
ATOL = 1e-5


@pytest.fixture(scope="module")
def task():
    return build_task(SyntheticConfig())


@pytest.fixture(scope="module")
def tok(task):
    return build_tokenizer(task)


def common(tmp_path, name: str) -> dict:
    return {
        "output_dir": str(tmp_path / name),
        "report_to": "none",
        "use_cpu": True,
        "per_device_train_batch_size": N_ROWS,
        "seed": 0,
        "disable_tqdm": True,
        # TRL's configs default to bf16 autocast where the CPU supports it; the comparison is fp32.
        "bf16": False,
    }


def ours_args(tmp_path) -> TrainingArguments:
    return TrainingArguments(
        **common(tmp_path, "ours"), remove_unused_columns=False, label_names=[]
    )


def perturbed(model, seed: int, scale: float = 0.05):
    """Add fixed-seed noise to every weight (norm weights included, so none is all ones)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model


def first_batch(trainer) -> dict:
    return next(iter(trainer.get_train_dataloader()))


def split_pairs(batch: dict, completion_mask: torch.Tensor) -> dict:
    """TRL stacks [chosen; rejected] along the batch; ours keeps ``chosen_*`` / ``rejected_*``."""
    fields = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "completion_mask": completion_mask,
    }
    out = {}
    for field, x in fields.items():
        chosen, rejected = x.chunk(2, dim=0)
        out[f"chosen_{field}"], out[f"rejected_{field}"] = chosen.clone(), rejected.clone()
    return out


def assert_match(ours: torch.Tensor, theirs: torch.Tensor, name: str) -> None:
    diff = (ours.detach().float() - theirs.detach().float()).abs().item()
    print(f"{name}: ours={ours.item():.8f} trl={theirs.item():.8f} |diff|={diff:.3e}")
    torch.testing.assert_close(ours.detach().float(), theirs.detach().float(), rtol=0, atol=ATOL)


def test_sft_loss_matches_trl(task, tok, tmp_path):
    rows = demos_split(task, "test").select(range(N_ROWS)).select_columns(["prompt", "completion"])
    model = perturbed(tiny_model(task.config, len(tok), seed=0), seed=2).eval()
    cfg = trl.SFTConfig(
        **common(tmp_path, "trl_sft"),
        completion_only_loss=True,
        packing=False,
        padding_free=False,
        max_length=None,
    )
    theirs_trainer = trl.SFTTrainer(model=model, args=cfg, train_dataset=rows, processing_class=tok)
    batch = first_batch(theirs_trainer)
    completion_mask = (batch["labels"] != -100).long()
    # TRL added no EOS of its own: response-token counts equal our tokenisation of the completions.
    expected = sorted(len(tok(c)["input_ids"]) for c in rows["completion"])
    assert sorted(completion_mask.sum(1).tolist()) == expected
    assert (batch["input_ids"][completion_mask.bool()] == tok.eos_token_id).sum() == N_ROWS
    with torch.no_grad():
        theirs = theirs_trainer.compute_loss(model, dict(batch))
        ours_trainer = SFTTrainer(model=model, args=ours_args(tmp_path), processing_class=tok)
        inputs = {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "completion_mask": completion_mask,
        }
        ours = ours_trainer.compute_loss(model, inputs)
    assert_match(ours, theirs, "sft")


def test_bradley_terry_loss_matches_trl(task, tok, tmp_path):
    rows = preferences_split(task, "test").select(range(N_ROWS))
    rows = rows.select_columns(["prompt", "chosen", "rejected"])
    base = tiny_model(task.config, len(tok), seed=0)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(
        LlamaConfig(**{**base.config.to_dict(), "num_labels": 1})
    )
    model.config.pad_token_id = tok.pad_token_id
    model.eval()
    cfg = trl.RewardConfig(
        **common(tmp_path, "trl_rm"), center_rewards_coefficient=None, max_length=None
    )
    theirs_trainer = trl.RewardTrainer(
        model=model, args=cfg, train_dataset=rows, processing_class=tok
    )
    batch = first_batch(theirs_trainer)
    assert "margin" not in batch and batch["input_ids"].shape[0] == 2 * N_ROWS
    with torch.no_grad():
        theirs = theirs_trainer.compute_loss(model, dict(batch))
        ours_trainer = RewardTrainer(model=model, args=ours_args(tmp_path), processing_class=tok)
        # The Bradley–Terry loss reads only ids and attention; completion_mask is a required field.
        ours = ours_trainer.compute_loss(model, split_pairs(batch, batch["attention_mask"]))
    assert_match(ours, theirs, "bradley_terry")


def test_dpo_loss_matches_trl_with_distinct_reference(task, tok, tmp_path):
    rows = preferences_split(task, "test").select(range(N_ROWS))
    rows = rows.select_columns(["prompt", "chosen", "rejected"])
    policy = tiny_model(task.config, len(tok), seed=0).eval()
    ref = perturbed(copy.deepcopy(policy), seed=1)
    cfg = trl.DPOConfig(
        **common(tmp_path, "trl_dpo"),
        loss_type=["sigmoid"],
        beta=0.1,
        label_smoothing=0.0,
        precompute_ref_log_probs=False,
        max_length=None,
    )
    theirs_trainer = trl.DPOTrainer(
        model=policy, ref_model=ref, args=cfg, train_dataset=rows, processing_class=tok
    )
    batch = first_batch(theirs_trainer)
    # TRL's completion_mask marks exactly the response tokens, each ending with our own <eos>.
    n_eos = (batch["input_ids"][batch["completion_mask"].bool()] == tok.eos_token_id).sum()
    assert n_eos == 2 * N_ROWS
    with torch.no_grad():
        theirs = theirs_trainer.compute_loss(policy, dict(batch))
        ours_trainer = DPOTrainer(
            model=policy,
            ref_model=ref,
            method=DPOConfig(beta=0.1, label_smoothing=0.0),
            args=ours_args(tmp_path),
            processing_class=tok,
        )
        ours = ours_trainer.compute_loss(policy, split_pairs(batch, batch["completion_mask"]))
    # A reference equal to the policy would give exactly log 2 on both sides and prove nothing.
    assert abs(theirs.item() - math.log(2)) > 1e-3
    assert_match(ours, theirs, "dpo")
