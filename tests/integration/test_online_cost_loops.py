"""The loops' cheaper passes give the old values: RLOO's micro-batches grouped by length and cut
to their longest row accumulate the same loss and gradients as one pass over the padded batch,
the reference pass in length groups gives the same log-probs and hidden states, and PPO's old
log-probs read from the sampler equal the teacher-forced ones it used to recompute."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer

from irlalign.generation.sampling import HFSampler, SamplingConfig
from irlalign.loops.ppo import PPOConfig, _forward, _values, attach_value_head
from irlalign.loops.rloo import RLOOConfig, _accumulate
from irlalign.loops.step import reference_pass
from irlalign.losses.policy_gradient import rloo_token_advantages


@pytest.fixture(scope="module")
def setup(smoke_task_dir):
    folder = smoke_task_dir / "pi_init"
    tok = AutoTokenizer.from_pretrained(folder)
    policy = AutoModelForCausalLM.from_pretrained(folder)
    ref = AutoModelForCausalLM.from_pretrained(folder).eval().requires_grad_(False)
    with torch.no_grad():  # a reference that differs from the policy
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    prompts = list(load_from_disk(str(smoke_task_dir / "eval_prompts"))["prompt"][:4])
    torch.manual_seed(0)
    rollouts = HFSampler(policy, tok, SamplingConfig(max_new_tokens=12)).sample(prompts, 3)
    lengths = rollouts.attention_mask.sum(1)
    assert lengths.min() < lengths.max()  # rows of different lengths: something to cut
    return policy, ref, rollouts


def _grads_after(ctx, cfg, rollouts, adv, clipped, ref_hidden):
    ctx.policy.zero_grad(set_to_none=True)
    rows = torch.arange(rollouts.input_ids.shape[0])
    stats = _accumulate(ctx, cfg, rollouts, adv, rows, clipped, ref_hidden)
    grads = [p.grad.clone() for p in ctx.policy.parameters()]
    return stats, grads


@pytest.mark.parametrize("exact,clipped", [(False, False), (True, False), (False, True)])
def test_length_grouped_micro_batches_give_the_same_gradient(setup, exact, clipped):
    policy, ref, rollouts = setup
    ctx = SimpleNamespace(
        device=torch.device("cpu"),
        policy=policy,
        ref=ref,
        accelerator=SimpleNamespace(backward=lambda loss: loss.backward()),
    )
    mask = rollouts.completion_mask[:, 1:].bool()
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(rollouts.logps.shape, generator=g) * mask
    adv = rloo_token_advantages(rewards, mask, k=3)
    _, ref_hidden = reference_pass(ref, rollouts, "cpu", None)
    ref_hidden = ref_hidden if exact else None
    kw = {"k": 3, "advantage": "reward_to_go", "kl_estimator": "exact" if exact else "sample"}
    one_pass = RLOOConfig(micro_batch=64, **kw)  # the whole padded batch at once
    grouped = RLOOConfig(micro_batch=5, **kw)
    base_stats, base = _grads_after(ctx, one_pass, rollouts, adv, clipped, ref_hidden)
    stats, grads = _grads_after(ctx, grouped, rollouts, adv, clipped, ref_hidden)
    assert stats["loss/total"] == pytest.approx(base_stats["loss/total"], rel=1e-5, abs=1e-6)
    if exact:
        assert stats["policy/kl_exact"] == pytest.approx(base_stats["policy/kl_exact"], rel=1e-5)
    for a, b in zip(grads, base, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_reference_pass_in_length_groups(setup):
    _, ref, rollouts = setup
    logps, hidden = reference_pass(ref, rollouts, "cpu", None, temperature=0.9)
    grouped, grouped_hidden = reference_pass(ref, rollouts, "cpu", None, temperature=0.9, rows=5)
    torch.testing.assert_close(grouped, logps, rtol=1e-5, atol=1e-6)
    attended = rollouts.attention_mask.bool()
    torch.testing.assert_close(grouped_hidden[attended], hidden[attended], rtol=1e-5, atol=1e-5)


def test_ppo_old_logps_from_the_sampler(setup, smoke_task_dir):
    _, _, rollouts = setup  # sampled at temperature 1 by the same weights as `policy` below
    policy = AutoModelForCausalLM.from_pretrained(smoke_task_dir / "pi_init")
    attach_value_head(policy)
    ctx = SimpleNamespace(policy=policy)
    batch = (rollouts.input_ids, rollouts.attention_mask, rollouts.completion_mask)
    with torch.no_grad():
        logps, values = _forward(ctx, PPOConfig(), *batch)
        torch.testing.assert_close(_values(ctx, *batch[:2]), values)
    torch.testing.assert_close(rollouts.logps, logps, rtol=0, atol=1e-5)
