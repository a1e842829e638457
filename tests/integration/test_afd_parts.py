"""AfD parts on the tiny synthetic model: the log-ratio reward and the BCE discriminator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import load_from_disk
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    TrainingArguments,
    set_seed,
)

from irlalign.modeling.load import load_tokenizer
from irlalign.modeling.log_ratio import LogRatioReward
from irlalign.modeling.reward import RewardModel, SequenceClassifierReward, response_batches
from irlalign.trainers.discriminator import (
    DiscriminatorConfig,
    DiscriminatorTrainer,
    LabelledCollator,
    labelled_dataset,
    train_discriminator,
)


@pytest.fixture(scope="module")
def parts(smoke_task_dir):
    path = str(smoke_task_dir / "pi_init")
    tok = load_tokenizer(path)
    init = AutoModelForCausalLM.from_pretrained(path)
    sft = AutoModelForCausalLM.from_pretrained(path)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a stand-in π_SFT: π_init with fixed noise on every weight
        for p in sft.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    rows = load_from_disk(str(smoke_task_dir / "demos"))["train"].select(range(8))
    return path, tok, init, sft, list(rows["prompt"]), list(rows["completion"])


def _direct_log_ratio(sft, init, tok, prompt: str, response: str) -> tuple[float, int]:
    """Σ over response tokens of log π_SFT − log π_init with full logits, one unpadded row."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(response, add_special_tokens=False)["input_ids"]
    r = r if r and r[-1] == tok.eos_token_id else [*r, tok.eos_token_id]
    ids = torch.tensor([p + r])
    with torch.no_grad():
        lp = [torch.log_softmax(m(ids).logits[0, :-1].double(), -1) for m in (sft, init)]
    targets = ids[0, 1:]
    diff = (lp[0] - lp[1]).gather(-1, targets[:, None])[:, 0]
    return float(diff[len(p) - 1 :].sum()), len(r)


def test_log_ratio_of_a_model_with_itself_is_exactly_zero(parts):
    _, tok, init, _, prompts, responses = parts
    rm = LogRatioReward(init, init, tok)
    assert isinstance(rm, RewardModel) and rm.tokenizer is tok and rm.model is init
    assert (rm.score(prompts, responses) == 0).all()
    assert all((r.rewards == 0).all() for r in rm.token_rewards(prompts, responses))


@pytest.fixture(scope="module")
def direct(parts):
    _, tok, init, sft, prompts, responses = parts
    return [
        _direct_log_ratio(sft, init, tok, p, r) for p, r in zip(prompts, responses, strict=True)
    ]


@pytest.mark.parametrize("normalise", [False, True])
def test_log_ratio_matches_a_direct_computation(parts, direct, normalise):
    _, tok, init, sft, prompts, responses = parts
    rm = LogRatioReward(sft, init, tok, normalise=normalise, batch_size=3, chunk_tokens=40)
    scores = rm.score(prompts, responses)
    want = np.array([s / n if normalise else s for s, n in direct])
    assert np.abs(want).min() > 1e-3  # the two models do differ
    np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-4)
    one_batch = LogRatioReward(sft, init, tok, normalise=normalise).score(prompts, responses)
    np.testing.assert_allclose(scores, one_batch, atol=1e-5)  # padding changes nothing
    rows = rm.token_rewards(prompts, responses)
    for row, score, (_, n) in zip(rows, scores, direct, strict=True):
        assert len(row.token_ids) == len(row.rewards) == n and row.sigma is None
        assert row.token_ids[-1] == tok.eos_token_id
        assert row.rewards.sum() == pytest.approx(score, abs=1e-5)


def _toy_rows(prompts, responses):
    """Separable classes on the same prompts: demonstrations (1) vs "dog dog … <eos>" (0)."""
    negatives = [" ".join(["dog"] * (len(r.split()) - 1) + ["<eos>"]) for r in responses]
    labels = [1.0] * len(prompts) + [0.0] * len(prompts)
    return prompts + prompts, responses + negatives, labels


def _args(out, **kw) -> TrainingArguments:
    base = {
        "output_dir": str(out),
        "max_steps": 10,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-2,
        "logging_steps": 2,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
    }
    return TrainingArguments(**{**base, **kw})


def test_labelled_dataset_tokenises_like_scoring(parts):
    _, tok, init, _, prompts, responses = parts
    ds = labelled_dataset(tok, prompts[:4], responses[:4], [1, 0, 1, 0])
    assert ds.column_names == ["input_ids", "attention_mask", "completion_mask", "label"]
    batch = next(response_batches(init, tok, prompts[:4], responses[:4], batch_size=4))
    collated = LabelledCollator(tok.pad_token_id)([ds[i] for i in range(4)])
    for key in ("input_ids", "attention_mask", "completion_mask"):
        assert torch.equal(collated[key], batch[key].cpu()), key
    assert collated["label"].tolist() == [1.0, 0.0, 1.0, 0.0]
    short = labelled_dataset(tok, prompts[:2], responses[:2], [1, 0], max_length=6)
    assert max(len(x) for x in short["input_ids"]) == 6
    with pytest.raises(ValueError):
        labelled_dataset(tok, prompts[:2], responses[:1], [1, 0])
    with pytest.raises(ValueError):
        DiscriminatorConfig(label_smoothing=1.0)


def test_train_discriminator_learns_a_separable_toy_task(parts, tmp_path):
    path, tok, _, _, prompts, responses = parts
    p, r, y = _toy_rows(prompts, responses)
    set_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    before = {n: t.detach().clone() for n, t in model.named_parameters()}
    metrics_path = tmp_path / "metrics.jsonl"
    ds = labelled_dataset(tok, p, r, y)
    trained = train_discriminator(model, tok, ds, _args(tmp_path / "ckpt"), metrics_path)
    after = dict(trained.named_parameters())
    assert not torch.equal(before["score.weight"], after["score.weight"])
    assert any(not torch.equal(before[n], after[n]) for n in before if not n.startswith("score"))
    scores = SequenceClassifierReward(trained, tok).score(p, r)
    accuracy = float(((scores > 0) == (np.array(y) > 0.5)).mean())
    assert accuracy > 0.5, accuracy
    logs = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    logged = [x for x in logs if "rewards/accuracy" in x]
    assert logged and all(np.isfinite(x["loss/total"]) for x in logged)
    assert {"rewards/pos_mean", "rewards/neg_mean"} <= set(logged[-1])
    assert logged[-1]["loss/total"] < logged[0]["loss/total"]


def test_discriminator_evaluate_and_label_smoothing(parts, tmp_path):
    path, tok, _, _, prompts, responses = parts
    p, r, y = _toy_rows(prompts[:4], responses[:4])
    ds = labelled_dataset(tok, p, r, y)
    set_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    args = _args(tmp_path, max_steps=1, label_names=["label"], remove_unused_columns=False)
    trainer = DiscriminatorTrainer(
        model=model,
        args=args,
        train_dataset=ds,
        eval_dataset=ds,
        data_collator=LabelledCollator(tok.pad_token_id),
        processing_class=tok,
        method=DiscriminatorConfig(label_smoothing=0.1),
    )
    out = trainer.evaluate()
    assert np.isfinite(out["eval_loss"]) and 0 <= out["eval_rewards/accuracy"] <= 1
