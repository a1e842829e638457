"""`DenseRewardGRPOTrainer`: TRL's GRPO with per-token advantages from a dense irlalign reward,
two steps on the smoke task's π_init."""

from __future__ import annotations

import pytest
import torch

trl = pytest.importorskip("trl")

from datasets import Dataset, load_from_disk  # noqa: E402

from irlalign.integrations import trl as integration  # noqa: E402
from irlalign.modeling.implicit_reward import load_causal_lm  # noqa: E402
from irlalign.modeling.load import load_tokenizer  # noqa: E402
from irlalign.modeling.reward_specs import load_reward_spec  # noqa: E402


@pytest.fixture(scope="module")
def demonstrator(smoke_task_dir, tmp_path_factory):
    model, tok = load_causal_lm(smoke_task_dir / "pi_init")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    out = tmp_path_factory.mktemp("demonstrator")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _args(out) -> trl.GRPOConfig:
    return trl.GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        # TRL defaults to bf16 autocast where the CPU has it; accelerate's process-wide state
        # would then refuse the fp32 loops that later tests start in the same process.
        bf16=False,
        seed=0,
        disable_tqdm=True,
    )


def test_dense_grpo_trains_with_per_token_advantages(smoke_task_dir, demonstrator, tmp_path):
    pi_init = str(smoke_task_dir / "pi_init")
    rm = load_reward_spec(f"log_ratio:{demonstrator},{pi_init}")
    prompts = list(dict.fromkeys(load_from_disk(str(smoke_task_dir / "demos"))["train"]["prompt"]))
    seen = []

    class Recording(integration.DenseRewardGRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            seen.append(out)
            return out

    trainer = Recording(
        model=pi_init,
        dense_reward=rm,
        args=_args(tmp_path),
        train_dataset=Dataset.from_dict({"prompt": prompts[:8]}),
        processing_class=load_tokenizer(pi_init),
    )
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    assert len(seen) == 2
    for out in seen:
        adv, mask = out["advantages"], out["completion_mask"].bool()
        assert adv.shape == out["completion_ids"].shape  # one advantage per completion token
        assert torch.isfinite(adv).all() and (adv[~mask] == 0).all()
        # Dense: advantages change along a completion (a sequence advantage would be constant).
        assert any(len(set(adv[b][mask[b]].tolist())) > 1 for b in range(len(adv)))
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert logged and all(torch.isfinite(torch.tensor(h["reward"])) for h in logged)


def test_unchecked_trl_versions_are_refused(monkeypatch):
    integration._dense_trainer_class.cache_clear()
    monkeypatch.setattr(trl, "__version__", "9.0.0")
    try:
        with pytest.raises(ImportError, match="9.0.0"):
            integration.DenseRewardGRPOTrainer  # noqa: B018
    finally:
        integration._dense_trainer_class.cache_clear()
