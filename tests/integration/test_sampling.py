"""`HFSampler` on the tiny synthetic model: grouping, masks, EOS, the log-probabilities of the
distribution actually sampled, seeded reproducibility and stop strings."""

from __future__ import annotations

import pytest
import torch
from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer

from irlalign.generation.sampling import HFSampler, Sampler, SamplingConfig


@pytest.fixture(scope="module")
def policy(smoke_task_dir):
    folder = smoke_task_dir / "pi_init"
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def _prompts(task, n=3):
    return list(load_from_disk(str(task / "eval_prompts"))["prompt"][:n])


def test_rollouts_shapes_masks_and_logps(policy, smoke_task_dir):
    model, tok = policy
    sampler = HFSampler(model, tok, SamplingConfig(max_new_tokens=12, batch_size=2))
    assert isinstance(sampler, Sampler)
    prompts = _prompts(smoke_task_dir)
    torch.manual_seed(0)
    out = sampler.sample(prompts, n=2)
    assert out.prompts == [p for p in prompts for _ in range(2)] and len(out.responses) == 6
    b, length = out.input_ids.shape
    assert out.logps.shape == (b, length - 1)
    for row in range(b):
        cm = out.completion_mask[row].bool()
        ids = out.input_ids[row][cm].tolist()
        assert 0 < len(ids) <= 12
        assert bool(out.finished[row]) == (ids[-1] == tok.eos_token_id)
        if out.finished[row]:
            assert tok.eos_token_id not in ids[:-1]  # nothing after the first EOS
        prompt_ids = tok(out.prompts[row], add_special_tokens=False)["input_ids"]
        assert out.input_ids[row][: len(prompt_ids)].tolist() == prompt_ids
        assert out.attention_mask[row].sum() == len(prompt_ids) + len(ids)
    # At temperature 1 without filters: the policy's own teacher-forced log π on the mask.
    ref = _filtered_logps(model, out, SamplingConfig())
    mask = out.completion_mask[:, 1:].bool()
    assert torch.allclose(out.logps[mask], ref[mask], atol=1e-5)
    assert (out.logps[~mask] == 0).all()


def _filtered_logps(model, out, cfg: SamplingConfig) -> torch.Tensor:
    """log_softmax of the teacher-forced logits / T with top-k then top-p applied by hand,
    gathered at the sampled tokens: (B, L − 1)."""
    with torch.no_grad():
        logits = model(input_ids=out.input_ids, attention_mask=out.attention_mask).logits[:, :-1]
    z = logits.float() / cfg.temperature
    if cfg.top_k > 0:
        kth = z.topk(cfg.top_k, dim=-1).values[..., -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    if cfg.top_p < 1.0:
        order = z.sort(dim=-1, descending=True)
        probs = order.values.softmax(-1)
        # keep the smallest prefix whose mass reaches top_p (the token that crosses it included)
        drop_sorted = probs.cumsum(-1) - probs >= cfg.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order.indices, drop_sorted)
        z = z.masked_fill(drop, float("-inf"))
    return z.log_softmax(-1).gather(-1, out.input_ids[:, 1:, None]).squeeze(-1)


@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.3])
@pytest.mark.parametrize(("top_k", "top_p"), [(0, 1.0), (5, 1.0), (0, 0.8), (8, 0.9)])
def test_logps_are_those_of_the_distribution_sampled_from(
    policy, smoke_task_dir, temperature, top_k, top_p
):
    model, tok = policy
    cfg = SamplingConfig(max_new_tokens=12, temperature=temperature, top_k=top_k, top_p=top_p)
    torch.manual_seed(1)
    out = HFSampler(model, tok, cfg).sample(_prompts(smoke_task_dir, 4), n=3)
    mask = out.completion_mask[:, 1:].bool()
    expected = _filtered_logps(model, out, cfg)
    assert torch.isfinite(expected[mask]).all()  # every sampled token survived the filters
    torch.testing.assert_close(out.logps[mask], expected[mask], atol=1e-4, rtol=1e-4)
    if cfg.filters or temperature != 1.0:  # and it is not the policy's own distribution
        plain = _filtered_logps(model, out, SamplingConfig())
        assert not torch.allclose(out.logps[mask], plain[mask], atol=1e-3)


def test_seeded_sampling_is_reproducible_and_stop_strings_end_responses(policy, smoke_task_dir):
    model, tok = policy
    prompts = _prompts(smoke_task_dir, 2)
    cfg = SamplingConfig(max_new_tokens=10, temperature=0.7, top_k=5, top_p=0.9)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(HFSampler(model, tok, cfg).sample(prompts, n=3).responses)
    assert runs[0] == runs[1]
    word = runs[0][0].split()[0]  # a word the policy produces first: a stop string it will hit
    torch.manual_seed(3)
    stopped = HFSampler(model, tok, SamplingConfig(**{**cfg.__dict__, "stop_strings": (word,)}))
    out = stopped.sample(prompts, n=3)
    assert out.responses[0].split() == [word] and bool(out.finished[0])
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(temperature=0)
