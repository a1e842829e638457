"""Dense rewards from causal LMs: the IQLearn implicit reward and the log-ratio, as reward models
and as `reward_model` strings, on the smoke task's tiny π_init."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import load_from_disk

from irlalign.cli.main import main
from irlalign.generation.offsets import prefix_spans
from irlalign.generation.rewards import dense_on_policy_tokens
from irlalign.modeling.heads import VALUE_HEAD, ScalarHead, attach_head, save_pretrained_with_heads
from irlalign.modeling.implicit_reward import ImplicitReward, load_causal_lm
from irlalign.modeling.log_ratio import LogRatioReward
from irlalign.modeling.reward import response_batches
from irlalign.modeling.reward_specs import load_reward_spec


@pytest.fixture(scope="module")
def pi_init(smoke_task_dir) -> str:
    return str(smoke_task_dir / "pi_init")


@pytest.fixture(scope="module")
def perturbed(pi_init, tmp_path_factory) -> str:
    """π_init with noise on every weight and a random value head: a second, different model."""
    model, tok = load_causal_lm(pi_init)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    head = attach_head(model, VALUE_HEAD, ScalarHead(model.config.hidden_size))
    torch.nn.init.normal_(head.linear.weight, std=0.5)
    torch.nn.init.constant_(head.linear.bias, 0.7)
    out = tmp_path_factory.mktemp("perturbed")
    save_pretrained_with_heads(model, out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def demos(smoke_task_dir) -> tuple[list[str], list[str]]:
    rows = load_from_disk(str(smoke_task_dir / "demos"))["test"].select(range(4))
    return list(rows["prompt"]), list(rows["completion"])


def _reference_terms(model, tok, prompts, responses):
    """log π(y, EOS|x) and V(s₀) = logsumexp of the logits after the prompt, from one plain
    full-logits forward (no chunked head, no IQ terms): the telescoping sum's two ends."""
    batch = next(response_batches(model, tok, prompts, responses, len(prompts)))
    ids, am, cm = batch["input_ids"], batch["attention_mask"], batch["completion_mask"].bool()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=am).logits.float()
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    logp = torch.where(cm[:, 1:], logp, torch.zeros_like(logp)).sum(1)
    first = cm.long().argmax(1)  # the first response token; the state before it is s₀
    v0 = torch.logsumexp(logits[torch.arange(len(ids)), first - 1], -1)
    return logp.numpy(), v0.numpy(), first


def test_implicit_token_rewards_equal_the_rewards_cli(smoke_task_dir, pi_init, demos, tmp_path):
    out = tmp_path / "r.jsonl"
    data = str(smoke_task_dir / "demos")
    args = ["rewards", "--model", pi_init, "--data", data, "--split", "test", "--max-rows", "4"]
    assert main([*args, "--out", str(out)]) == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    rows = load_reward_spec(f"implicit:{pi_init}").token_rewards(*demos)
    for row, want in zip(rows, written, strict=True):
        np.testing.assert_allclose(row.rewards, want["rewards"], rtol=1e-5, atol=1e-5)
        assert row.rewards.sum() == pytest.approx(want["sequence_reward"], abs=1e-4)


def test_implicit_rewards_telescope_to_logp_plus_v0_at_gamma_one(pi_init, demos):
    model, tok = load_causal_lm(pi_init)
    rm = ImplicitReward(model, tok)
    logp, v0, _ = _reference_terms(model, tok, *demos)
    # Every response ends in the EOS the tokenisation appends, the terminal (V = 0 after it):
    # Σ_t r_t = Σ_t [V(s_t) + log π(a_t|s_t) − V(s_{t+1})] = log π(y, EOS|x) + V(s₀).
    np.testing.assert_allclose(rm.score(*demos), logp + v0, rtol=1e-4, atol=1e-4)
    rows = rm.token_rewards(*demos)
    assert all(row.token_ids[-1] == tok.eos_token_id for row in rows)
    assert [row.rewards.sum() for row in rows] == pytest.approx(list(rm.score(*demos)), abs=1e-4)


def test_implicit_rewards_use_the_value_head_when_the_checkpoint_has_one(perturbed, demos):
    model, tok = load_causal_lm(perturbed)
    head = model.irl_heads[VALUE_HEAD]
    logp, _, first = _reference_terms(model, tok, *demos)
    batch = next(response_batches(model, tok, *demos, len(demos[0])))
    with torch.no_grad():
        hidden = model(**{k: batch[k] for k in ("input_ids", "attention_mask")},
                       output_hidden_states=True).hidden_states[-1]  # fmt: skip
        v0 = head(hidden)[torch.arange(len(first)), first - 1].numpy()
    score = ImplicitReward(model, tok).score(*demos)
    np.testing.assert_allclose(score, logp + v0, rtol=1e-4, atol=1e-4)  # V = V_φ, not LSE


def test_implicit_reward_minus_a_reference_is_the_token_difference(pi_init, perturbed, demos):
    rm = load_reward_spec(f"implicit:{perturbed},{pi_init}")
    own = load_reward_spec(f"implicit:{perturbed}").token_rewards(*demos)
    ref = load_reward_spec(f"implicit:{pi_init}").token_rewards(*demos)
    for row, a, b in zip(rm.token_rewards(*demos), own, ref, strict=True):
        np.testing.assert_allclose(row.rewards, a.rewards - b.rewards, atol=1e-5)
    same = load_reward_spec(f"implicit:{pi_init},{pi_init}")
    np.testing.assert_allclose(same.score(*demos), 0.0, atol=1e-6)


def test_implicit_reward_at_gamma_below_one_still_sums_to_its_score(pi_init, demos):
    model, tok = load_causal_lm(pi_init)
    rm = ImplicitReward(model, tok, gamma=0.9)
    sums = [row.rewards.sum() for row in rm.token_rewards(*demos)]
    assert sums == pytest.approx(list(rm.score(*demos)), abs=1e-4)
    assert not np.allclose(rm.score(*demos), ImplicitReward(model, tok).score(*demos))


def test_log_ratio_tokens_sum_to_the_sequence_log_ratio(pi_init, perturbed, demos):
    rm = load_reward_spec(f"log_ratio:{perturbed},{pi_init}")
    assert isinstance(rm, LogRatioReward)
    lp_policy, _, _ = _reference_terms(*load_causal_lm(perturbed), *demos)
    lp_ref, _, _ = _reference_terms(*load_causal_lm(pi_init), *demos)
    np.testing.assert_allclose(rm.score(*demos), lp_policy - lp_ref, rtol=1e-4, atol=1e-4)
    sums = [row.rewards.sum() for row in rm.token_rewards(*demos)]
    assert sums == pytest.approx(list(lp_policy - lp_ref), abs=1e-4)


class _CharTokenizer:
    """One token per character: a policy tokenizer unlike the word-level reward-model one."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


@pytest.mark.parametrize("kind", ["implicit", "log_ratio"])
def test_dense_rewards_keep_their_total_through_another_tokenizer(kind, pi_init, perturbed, demos):
    rm = load_reward_spec(f"{kind}:{perturbed},{pi_init}")
    responses = [r.replace(" <eos>", "") for r in demos[1]]  # as sampled: specials skipped
    rows = rm.token_rewards(demos[0], responses)
    for row, text in zip(rows, responses, strict=True):
        chars = [ord(c) for c in text]
        moved = dense_on_policy_tokens(row, chars, _CharTokenizer(), rm.tokenizer)
        assert len(moved) == len(chars) and sum(moved) == pytest.approx(row.rewards.sum())
        rm_spans = prefix_spans(rm.tokenizer, row.token_ids)
        assert rm_spans[-1][0] == rm_spans[-1][1]  # the EOS: no characters, its reward to the end


def test_reward_specs_parse_and_reject(pi_init, tmp_path):
    assert isinstance(load_reward_spec(f"implicit:{pi_init}"), ImplicitReward)
    with pytest.raises(ValueError, match="comma-separated"):
        load_reward_spec(f"log_ratio:{pi_init}")
    with pytest.raises(ValueError, match="comma-separated"):
        load_reward_spec(f"implicit:{pi_init},{pi_init},{pi_init}")
    with pytest.raises(FileNotFoundError):
        load_reward_spec(f"implicit:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="gamma"):
        ImplicitReward(*load_causal_lm(pi_init), gamma=0.0)
