"""AVA's reward-weight and sequence-score options end to end on a tiny random model: the
attention implementation behind the all-positions weights, the config values old and new, the
reward-head records a reloaded reward model is read by, and which score each objective gets."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

from irlalign.losses.ava import causal_reward_weights, full_reward_weights, head_weights
from irlalign.modeling.attention import (
    CAUSAL_WEIGHTS_ATTENTION,
    SCORES_ATTENTION,
    use_causal_weights_attention,
    use_scores_attention,
)
from irlalign.modeling.heads import GaussianRewardHead, get_head
from irlalign.trainers.ava import AVAConfig, attach_ava_heads, sequence_score, tqr_terms

VOCAB = 40


def tiny(kind: str):
    torch.manual_seed(0)
    if kind == "llama":  # grouped-query attention: 4 query heads on 2 key/value heads
        cfg = LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=32,
        )  # fmt: skip
    else:
        cfg = GPT2Config(
            n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=32, attn_pdrop=0.0,
            bos_token_id=1, eos_token_id=2,
        )  # fmt: skip
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()


def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (2, 10), generator=g)
    am = torch.ones(2, 10, dtype=torch.long)
    cm = torch.zeros(2, 10, dtype=torch.long)
    am[1, 8:] = 0
    cm[0, 4:], cm[1, 3:8] = 1, 1
    return {"input_ids": ids, "attention_mask": am, "completion_mask": cm}


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_scores_attention_keeps_the_model_and_returns_unmasked_scores(kind):
    model, b = tiny(kind), batch()
    kw = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_attentions=True)
    with torch.no_grad():
        eager = model(**kw)
        use_scores_attention(model)
        scored = model(**kw)
    assert model.config._attn_implementation == SCORES_ATTENTION
    torch.testing.assert_close(scored.logits, eager.logits)  # SDPA kernels: rounding only
    assert all(a is None for a in scored.attentions[:-1])  # only the last layer is rebuilt
    # the causal, padding-masked softmax of the scores is exactly eager's attention
    allowed = torch.ones(10, 10).tril().bool() & b["attention_mask"].bool()[:, None, None, :]
    probs = scored.attentions[-1].masked_fill(~allowed, float("-inf")).softmax(-1)
    valid = b["attention_mask"].bool()
    torch.testing.assert_close(
        probs.transpose(1, 2)[valid], eager.attentions[-1].transpose(1, 2)[valid]
    )
    # and the scores above the diagonal exist: a full softmax differs from the causal one
    full = full_reward_weights(scored.attentions[-1], b["completion_mask"])
    causal = causal_reward_weights(eager.attentions[-1], b["attention_mask"])
    assert not torch.allclose(full, causal)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_causal_weights_attention_is_eager_attention_of_the_last_layer(kind):
    model, b = tiny(kind), batch()
    kw = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_attentions=True)
    with torch.no_grad():
        eager = model(**kw)
        use_causal_weights_attention(model)
        rebuilt = model(**kw)
        unpadded = model(input_ids=b["input_ids"], output_attentions=True)  # no mask at all
        model.set_attn_implementation("eager")
        eager_unpadded = model(input_ids=b["input_ids"], output_attentions=True)
    torch.testing.assert_close(rebuilt.logits, eager.logits)
    valid = b["attention_mask"].bool()
    torch.testing.assert_close(
        rebuilt.attentions[-1].transpose(1, 2)[valid], eager.attentions[-1].transpose(1, 2)[valid]
    )
    torch.testing.assert_close(unpadded.attentions[-1], eager_unpadded.attentions[-1])


@pytest.mark.parametrize("rwt", ["attn_full", "attn_causal", "none"])
def test_tqr_terms_under_each_reward_weighting(rwt):
    model, b = tiny("llama"), batch()
    cfg = AVAConfig(rwt=rwt)
    attach_ava_heads(model, cfg)
    want = {"attn_full": SCORES_ATTENTION, "attn_causal": CAUSAL_WEIGHTS_ATTENTION}.get(
        rwt, "eager"
    )
    assert model.config._attn_implementation == want
    head = get_head(model, "reward")
    with torch.no_grad():  # μ ≠ 0, so the weights can be read back from w·μ
        head.proj.weight.normal_(generator=torch.Generator().manual_seed(2))
    terms = tqr_terms(model, b, cfg)
    loss = -terms.ll[terms.ll_mask].mean() - terms.logq[terms.td_mask].mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert head.proj.weight.grad.abs().sum() > 0
    if rwt == "attn_full":  # (μ, σ) are read at response tokens only, mean w = 1 per response
        mu, _ = head(model.model(**{k: b[k] for k in ("input_ids", "attention_mask")})[0])
        w = terms.mu.detach() / mu.detach()
        cm = b["completion_mask"].bool()
        rows = torch.where(cm, w, torch.zeros_like(w)).sum(1) / cm.sum(1)
        torch.testing.assert_close(rows, torch.ones_like(rows), rtol=1e-5, atol=1e-5)
        assert torch.all(terms.mu[~cm] == 0)


def test_defaults_and_old_config_values():
    cfg = AVAConfig()
    assert (cfg.rwt, cfg.rwt_rescale) == ("attn_full", True)
    old = AVAConfig(rwt="attn_causal", rwt_rescale=False)  # the former dataclass defaults
    assert (old.rwt, old.rwt_rescale) == ("attn_causal", False)
    with pytest.raises(ValueError) as err:
        AVAConfig(rwt="attn")
    msg = str(err.value)
    assert "\n" not in msg and "'attn_full'" in msg and "'attn_causal'" in msg
    with pytest.raises(ValueError, match="rwt must be one of"):
        AVAConfig(rwt="full")


def test_cli_reports_the_old_value_on_one_line(repo_root, capsys):
    from irlalign.cli.main import main

    preset = str(repo_root / "configs" / "synthetic" / "ava.yaml")
    assert main(["train", "ava", "--config", preset, "--method.rwt", "attn"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "attn_causal" in err and "attn_full" in err


def test_saved_heads_from_before_load_as_they_were_trained():
    legacy = {
        "hidden_size": 8,
        "shift": 1,
        "rwt": "attn",
        "rwt_rescale": False,
        "sigma_floor": 1e-4,
    }
    head = GaussianRewardHead(**legacy)
    assert head.rwt == "attn_causal" and head.score == "last" and head.rwt_rescale is False
    spec = GaussianRewardHead(8).spec()
    assert spec["rwt"] == "attn_full" and spec["rwt_rescale"] is True and spec["score"] == "last"
    with pytest.raises(ValueError, match="score"):
        GaussianRewardHead(8, score="mean")


def test_each_objective_records_the_score_it_trains():
    assert sequence_score(AVAConfig()) == "last"  # AVA-p: the contrastive term's last token
    assert sequence_score(AVAConfig(chosen_only=True)) == "sum"  # AVA-d on the chosen half
    assert sequence_score(AVAConfig(), demonstrations=True) == "sum"  # AVA-d on demonstrations
    model = tiny("llama")
    attach_ava_heads(model, AVAConfig(chosen_only=True))
    assert get_head(model, "reward").spec()["score"] == "sum"


def test_head_weights_need_the_attention():
    b = batch()
    with pytest.raises(ValueError, match="attention"):
        head_weights(None, b["attention_mask"], b["completion_mask"], rwt="attn_full")
