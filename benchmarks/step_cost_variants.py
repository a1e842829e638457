"""The variants `step_cost.py` times: each builds its trainer around the given model and returns a
zero-argument closure computing that variant's loss on the benchmark batch (the caller runs
backward and the optimiser step).

All variants of a suite see the same rows. Pair variants use `batch` preference pairs (the rows as
chosen, the same rows rolled by one as rejected), so they run 2·batch sequences per step; AVA-d
runs on the chosen rows only. DPO variants also run a no-grad forward of a frozen reference (a
copy of the policy taken before training starts).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import torch

Step = Callable[[], torch.Tensor]


class Skip(Exception):
    """A variant that cannot be built here; its row says why instead of a number."""


@dataclass(frozen=True)
class Variant:
    label: str
    build: Callable[[torch.nn.Module, dict, dict], Step]
    classifier: bool = False  # one-label sequence classifier instead of a causal LM
    pairs: bool = False  # 2·batch sequences (chosen and rejected) per step
    reference: bool = False  # plus a frozen reference's forward over the same sequences


def _args(ctx: dict):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        report_to="none",
        use_cpu=ctx["device"] == "cpu",
        remove_unused_columns=False,
        label_names=[],
        bf16=False,  # the caller's autocast decides the precision, for every variant alike
    )


def _trl_common(ctx: dict) -> dict:
    return {
        "output_dir": tempfile.mkdtemp(),
        "report_to": "none",
        "use_cpu": ctx["device"] == "cpu",
        "bf16": False,
        "disable_tqdm": True,
    }


def _tokenizer():
    """Any tokenizer will do: the batch is already token ids; TRL's trainers only need one to
    prepare their (one-row, unused) dataset and to read the pad/eos ids (0 and 2, as the batch)."""
    from irlalign.synthetic.config import SyntheticConfig
    from irlalign.synthetic.language import build_task
    from irlalign.synthetic.model import build_tokenizer

    return build_tokenizer(build_task(SyntheticConfig()))


def _pair_rows(tok):
    from datasets import Dataset

    # TRL tokenises prompt + response joined as they are, and appends the EOS text unless the
    # response ends with it; this word-level tokenizer only splits on spaces, hence the spaces.
    prompt, chosen, rejected = (tok.decode(ids) for ids in ([5, 6], [7, 8], [9, 10]))
    return Dataset.from_dict(
        {"prompt": [prompt], "chosen": [f" {chosen} {tok.eos_token}"],
         "rejected": [f" {rejected} {tok.eos_token}"]}
    )  # fmt: skip


def pairs(batch: dict) -> dict:
    """A preference batch: `batch` as chosen, its rows rolled by one as rejected."""
    out = {f"chosen_{k}": v for k, v in batch.items()}
    out.update({f"rejected_{k}": v.roll(1, dims=0) for k, v in batch.items()})
    return out


def stacked(batch: dict) -> dict:
    """The same pairs as TRL batches them: [chosen; rejected] along the batch dimension."""
    p = pairs(batch)
    return {k: torch.cat([p[f"chosen_{k}"], p[f"rejected_{k}"]]) for k in batch}


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


# --- demonstrations suite ----------------------------------------------------------------------


def _sft(model, batch, ctx):
    from irlalign.data.collate import with_labels
    from irlalign.trainers.sft import SFTTrainer

    trainer = SFTTrainer(model=model, args=_args(ctx), processing_class=None)
    inputs = with_labels(dict(batch))
    return lambda: trainer.compute_loss(model, inputs)


def _iqlearn(model, batch, ctx):
    from irlalign.data.collate import with_labels
    from irlalign.trainers.iqlearn import IQLearnConfig, IQLearnTrainer

    model.config.eos_token_id = 2
    trainer = IQLearnTrainer(
        model=model, args=_args(ctx), processing_class=None, method=IQLearnConfig(lam=0.1)
    )
    inputs = with_labels(dict(batch))
    return lambda: trainer.compute_loss(model, inputs)


def _hf_loss(model, batch, ctx):
    from irlalign.data.collate import with_labels

    inputs = with_labels(dict(batch))
    return lambda: (
        model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            labels=inputs["labels"],
        ).loss
    )


def _trl_sft(model, batch, ctx):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from irlalign.data.collate import with_labels

    cfg = SFTConfig(**_trl_common(ctx), completion_only_loss=True)
    dummy = Dataset.from_dict({"input_ids": [[1, 2]], "completion_mask": [[0, 1]]})
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=dummy, processing_class=_tokenizer())
    inputs = with_labels(dict(batch))
    trl_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask", "labels")}
    return lambda: trainer.compute_loss(trainer.model, dict(trl_inputs))


# --- preference / reward suite -----------------------------------------------------------------


def _bt_rm(model, batch, ctx):
    from irlalign.trainers.reward import RewardTrainer

    trainer = RewardTrainer(model=model, args=_args(ctx), processing_class=None)
    inputs = pairs(batch)
    return lambda: trainer.compute_loss(trainer.model, inputs)


def _ava(rwt: str, demonstrations: bool = False, fused: bool = True):
    def build(model, batch, ctx):
        from irlalign.trainers.ava import AVAConfig, AVATrainer

        method = AVAConfig(rwt=rwt, fused_head=fused)
        trainer = AVATrainer(model=model, args=_args(ctx), processing_class=None, method=method)
        # Without chosen_/rejected_ keys AVATrainer takes its demonstrations path (AVA-d).
        inputs = dict(batch) if demonstrations else pairs(batch)
        return lambda: trainer.compute_loss(trainer.model, inputs)

    return build


def _pt_rm(model, batch, ctx):
    from irlalign.trainers.preference_transformer import PreferenceTransformerTrainer

    trainer = PreferenceTransformerTrainer(model=model, args=_args(ctx), processing_class=None)
    inputs = pairs(batch)
    return lambda: trainer.compute_loss(trainer.model, inputs)


def _dpo(model, batch, ctx):
    from irlalign.trainers.dpo import DPOConfig, DPOTrainer

    trainer = DPOTrainer(
        model=model,
        ref_model=frozen_copy(model),
        args=_args(ctx),
        processing_class=None,
        method=DPOConfig(beta=0.1),
    )
    inputs = pairs(batch)
    return lambda: trainer.compute_loss(trainer.model, inputs)


def _afd_disc(model, batch, ctx):
    from irlalign.trainers.discriminator import DiscriminatorTrainer

    trainer = DiscriminatorTrainer(model=model, args=_args(ctx), processing_class=None)
    both = stacked(batch)
    n = batch["input_ids"].shape[0]
    label = torch.cat([torch.ones(n), torch.zeros(n)]).to(both["input_ids"].device)
    inputs = {"input_ids": both["input_ids"], "attention_mask": both["attention_mask"]}
    inputs["label"] = label  # chosen rows as the positive class, rejected as the negative
    return lambda: trainer.compute_loss(trainer.model, inputs)


def _trl_dpo(model, batch, ctx):
    from trl import DPOConfig, DPOTrainer

    cfg = DPOConfig(
        **_trl_common(ctx),
        loss_type=["sigmoid"],
        beta=0.1,
        precompute_ref_log_probs=False,
        max_length=None,
    )
    tok = _tokenizer()
    trainer = DPOTrainer(
        model=model,
        ref_model=frozen_copy(model),
        args=cfg,
        train_dataset=_pair_rows(tok),
        processing_class=tok,
    )
    # TRL's collator output: input_ids, attention_mask, completion_mask, [chosen; rejected].
    inputs = stacked(batch)
    return lambda: trainer.compute_loss(trainer.model, dict(inputs))


def _trl_reward(model, batch, ctx):
    from trl import RewardConfig, RewardTrainer

    cfg = RewardConfig(**_trl_common(ctx), center_rewards_coefficient=None, max_length=None)
    tok = _tokenizer()
    trainer = RewardTrainer(
        model=model, args=cfg, train_dataset=_pair_rows(tok), processing_class=tok
    )
    if trainer.model.config.pad_token_id != 0:
        raise Skip(f"TRL set pad_token_id={trainer.model.config.pad_token_id}, the batch pads 0")
    both = stacked(batch)
    inputs = {"input_ids": both["input_ids"], "attention_mask": both["attention_mask"]}
    # compute_loss adds use_cache to the dict it is given: a fresh one per step.
    return lambda: trainer.compute_loss(trainer.model, dict(inputs))


VARIANTS: dict[str, Variant] = {
    "sft": Variant("sft (ours)", _sft),
    "iqlearn": Variant("iqlearn λ=0.1", _iqlearn),
    "trl_sft": Variant("TRL SFTTrainer loss", _trl_sft),
    "hf_loss": Variant("HF built-in causal-LM loss", _hf_loss),
    "bt_rm": Variant("Bradley–Terry RM", _bt_rm, classifier=True, pairs=True),
    "ava_p": Variant("AVA-p (rwt attn_full)", _ava("attn_full"), pairs=True),
    "ava_p_norwt": Variant("AVA-p, rwt none", _ava("none"), pairs=True),
    "ava_p_ckpt": Variant(
        "AVA-p (attn_full), checkpointed head", _ava("attn_full", fused=False), pairs=True
    ),
    "ava_d": Variant("AVA-d on the chosen rows", _ava("attn_full", demonstrations=True)),
    "pt_rm": Variant("Preference Transformer", _pt_rm, pairs=True),
    "dpo": Variant("DPO (ours)", _dpo, pairs=True, reference=True),
    "afd_disc": Variant("AfD discriminator (BCE)", _afd_disc, classifier=True, pairs=True),
    "trl_dpo": Variant("TRL DPOTrainer loss", _trl_dpo, pairs=True, reference=True),
    "trl_reward": Variant("TRL RewardTrainer loss", _trl_reward, classifier=True, pairs=True),
}
PREFS = ("bt_rm", "ava_p", "ava_p_norwt", "ava_d", "pt_rm", "dpo", "afd_disc", "trl_dpo")
SUITES: dict[str, tuple[tuple[str, ...], str]] = {
    "iqlearn": (("sft", "iqlearn", "trl_sft", "hf_loss"), "sft"),
    "ava": (("bt_rm", "ava_p", "ava_p_ckpt", "ava_p_norwt", "pt_rm"), "bt_rm"),
    "prefs": ((*PREFS, "trl_reward"), "bt_rm"),
}
