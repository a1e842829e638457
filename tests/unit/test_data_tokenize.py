"""Tokenisation masks exactly the response, truncation is counted, collators pad safely."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

from irlalign.data.collate import (
    CompletionCollator,
    PreferenceCollator,
    concat_preference_batch,
)
from irlalign.data.formats import DataValidationError
from irlalign.data.tokenize import (
    TokenizationError,
    Truncation,
    tokenize_dataset,
    truncate,
)
from irlalign.synthetic.model import build_tokenizer

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Renders `assistant:` then the content with no separator: with the merge ':o' below, the
# full conversation tokenises `:o` as one token where the prompt alone ends with `:`.
NOT_PREFIX_SAFE = (
    "{% for m in messages %}{{ m['role'] }}:{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@pytest.fixture(scope="module")
def syn(default_task):
    return build_tokenizer(default_task)


@pytest.fixture(scope="module")
def bpe():
    """Character BPE with merges across word boundaries (': ' and ':o'), no pre-tokenizer."""
    chars = list("abcdefghijklmnopqrstuvwxyzQA :\n")
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({": ": len(vocab), ":o": len(vocab) + 1})
    core = Tokenizer(models.BPE(vocab=vocab, merges=[(":", " "), (":", "o")]))
    core.add_special_tokens(["<pad>", "</s>", "<|im_start|>", "<|im_end|>"])
    core.decoder = decoders.Fuse()  # tokens are characters: decode by plain concatenation
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", pad_token="<pad>")
    tok.chat_template = CHATML
    return tok


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def masked(row: dict, prefix: str = "") -> list[int]:
    pairs = zip(row[f"{prefix}input_ids"], row[f"{prefix}completion_mask"], strict=True)
    return [t for t, m in pairs if m]


def conversation(*turns: str) -> list[dict]:
    roles = ["user", "assistant"] * len(turns)
    return [{"role": r, "content": t} for r, t in zip(roles, turns, strict=False)]


# --- prompt/completion -------------------------------------------------------------------------


def test_completion_mask_marks_exactly_the_completion_and_eos_once(syn):
    rows = [
        {"prompt": "<bos> food cat dog <sep>", "completion": "big tiny run <eos>", "r": 1.0},
        {"prompt": "<bos> food cat <sep>", "completion": "big tiny", "r": 2.0},
    ]
    ds, stats = tokenize_dataset(rows, syn, source="demos")
    eos = syn.eos_token_id
    first, second = ds[0], ds[1]
    assert first["input_ids"] == ids(syn, rows[0]["prompt"]) + ids(syn, rows[0]["completion"])
    assert first["input_ids"].count(eos) == 1 and first["input_ids"][-1] == eos
    assert masked(first) == ids(syn, "big tiny run <eos>")
    assert first["completion_mask"] == [0] * 5 + [1] * 4
    assert masked(second) == ids(syn, "big tiny") + [eos]  # EOS appended once
    assert second["attention_mask"] == [1] * len(second["input_ids"])
    assert ds["r"] == [1.0, 2.0]  # non-text columns pass through
    assert (stats.rows, stats.kept, stats.dropped) == (2, 2, 0)


def test_append_eos_can_be_turned_off(syn):
    ds, _ = tokenize_dataset(
        [{"prompt": "<bos> food <sep>", "completion": "big"}], syn, append_eos=False
    )
    assert masked(ds[0]) == ids(syn, "big")


def test_separate_tokenisation_keeps_the_bpe_boundary_exact(bpe):
    row = {"prompt": "Q: hi A:", "completion": " ok"}
    joint = ids(bpe, "Q: hi A: ok")
    ds, _ = tokenize_dataset([row], bpe)
    # Jointly, ':' and ' ' merge across the boundary; separately they cannot.
    assert ds[0]["input_ids"] != joint + [bpe.eos_token_id]
    assert masked(ds[0]) == ids(bpe, " ok") + [bpe.eos_token_id]
    assert ds[0]["input_ids"][: -len(masked(ds[0]))] == ids(bpe, "Q: hi A:")


def test_validation_runs_before_tokenisation(syn):
    rows = [{"prompt": "<bos> food <sep>", "completion": "big"}, {"prompt": "x", "completion": 3}]
    with pytest.raises(DataValidationError, match=r"^d\.jsonl: row 1: field 'completion'"):
        tokenize_dataset(rows, syn, source="d.jsonl")


# --- conversations -----------------------------------------------------------------------------


def test_synthetic_chat_template_masks_only_the_last_assistant_turn(syn):
    rows = [{"messages": conversation("food cat", "big", "food dog", "tiny run")}]
    ds, _ = tokenize_dataset(rows, syn)
    full = "<bos> food cat <sep> big <eos> food dog <sep> tiny run <eos>"
    assert ds[0]["input_ids"] == ids(syn, full)
    assert masked(ds[0]) == ids(syn, "tiny run <eos>")


def test_chatml_masks_only_the_last_assistant_turn(bpe):
    rows = [{"messages": conversation("hi", "hello", "more", "ok")}]
    ds, _ = tokenize_dataset(rows, bpe)
    assert bpe.decode(masked(ds[0])) == "ok<|im_end|>\n"
    assert bpe.decode(ds[0]["input_ids"]) == bpe.apply_chat_template(
        rows[0]["messages"], tokenize=False
    )


def test_conversational_prompt_completion_and_preference(bpe):
    prompt = conversation("hi")
    pc = [{"prompt": prompt, "completion": [{"role": "assistant", "content": "yes"}]}]
    ds, _ = tokenize_dataset(pc, bpe)
    assert bpe.decode(masked(ds[0])) == "yes<|im_end|>\n"
    pref = [{**pc[0], "chosen": pc[0]["completion"], "rejected": conversation("", "no")[1:]}]
    pref[0].pop("completion")
    ds, _ = tokenize_dataset(pref, bpe)
    assert bpe.decode(masked(ds[0], "chosen_")) == "yes<|im_end|>\n"
    assert bpe.decode(masked(ds[0], "rejected_")) == "no<|im_end|>\n"


def test_template_that_is_not_prefix_safe_is_an_error(bpe):
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe.backend_tokenizer, eos_token="</s>")
    tok.chat_template = NOT_PREFIX_SAFE
    rows = [{"messages": conversation("hi", "ok")}] * 2
    with pytest.raises(TokenizationError, match=r"chat\.jsonl: row 0: .*not prefix-safe"):
        tokenize_dataset(rows, tok, source="chat.jsonl")


# --- preferences -------------------------------------------------------------------------------


def test_preferences_share_the_prompt(syn):
    row = {"prompt": "<bos> food cat <sep>", "chosen": "big run <eos>", "rejected": "tiny"}
    ds, _ = tokenize_dataset([row], syn)
    out = ds[0]
    prompt = ids(syn, row["prompt"])
    assert out["chosen_input_ids"][: len(prompt)] == prompt == out["rejected_input_ids"][:4]
    assert masked(out, "chosen_") == ids(syn, "big run <eos>")
    assert masked(out, "rejected_") == ids(syn, "tiny <eos>")
    assert sum(out["chosen_completion_mask"][: len(prompt)]) == 0


# --- truncation --------------------------------------------------------------------------------


def test_truncate_prompt_left_then_completion_right_counts_rows(syn):
    rows = [
        {"prompt": "<bos> food cat dog <sep>", "completion": "big <eos>"},  # 5 + 2: fits
        {"prompt": "<bos> food cat dog big <sep>", "completion": "run <eos>"},  # prompt 6 > 4
        {"prompt": "<bos> food <sep>", "completion": "big tiny run go see <eos>"},  # 3 + 6 > 7
    ]
    trunc = Truncation(max_length=7, max_prompt_length=5)
    ds, stats = tokenize_dataset(rows, syn, truncation=trunc)
    assert (stats.rows, stats.kept, stats.prompt_truncated, stats.completion_truncated) == (
        3,
        3,
        1,
        1,
    )
    assert stats.dropped == 0
    # The oldest prompt tokens go first: `<bos>` is dropped, `<sep>` kept.
    assert ds[1]["input_ids"] == ids(syn, "food cat dog big <sep> run <eos>")
    # A completion cut on the right keeps its first tokens and visibly loses its EOS.
    assert masked(ds[2]) == ids(syn, "big tiny run go")
    assert syn.eos_token_id not in ds[2]["input_ids"]
    assert max(len(x) for x in ds["input_ids"]) <= 7
    assert stats.as_metrics()["data/completion_truncated"] == 1


def test_drop_strategy_skips_and_counts(syn):
    rows = [
        {"prompt": "<bos> food <sep>", "completion": "big <eos>"},
        {"prompt": "<bos> food cat dog big <sep>", "completion": "run <eos>"},
        {"prompt": "<bos> food <sep>", "completion": "big tiny run go see <eos>"},
    ]
    trunc = Truncation(max_length=7, max_prompt_length=5, strategy="drop")
    ds, stats = tokenize_dataset(rows, syn, truncation=trunc)
    assert len(ds) == 1 and ds[0]["input_ids"] == ids(syn, "<bos> food <sep> big <eos>")
    assert (stats.kept, stats.dropped, stats.prompt_truncated, stats.completion_truncated) == (
        1,
        2,
        0,
        0,
    )


def test_preference_truncation_counts_a_row_once():
    prompt, chosen, rejected = [1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11]
    out = truncate(prompt, [chosen, rejected], Truncation(max_length=6, max_prompt_length=3))
    assert out == ([2, 3, 4], [[5, 6, 7], [8, 9, 10]], True, True)
    assert truncate(prompt, [chosen, rejected], Truncation(max_length=7, strategy="drop")) is None
    kept = truncate(prompt, [chosen, rejected], Truncation(max_length=8, strategy="drop"))
    assert kept == (prompt, [chosen, rejected], False, False)


def test_prompt_alone_longer_than_max_length_leaves_one_response_token():
    assert truncate([1, 2, 3, 4, 5], [[6, 7]], Truncation(max_length=4)) == (
        [3, 4, 5],
        [[6]],
        True,
        True,
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"max_length": 0}, {"max_length": 8, "max_prompt_length": 8}, {"strategy": "keep_end"}],
)
def test_truncation_config_is_validated(kwargs):
    with pytest.raises(ValueError):
        Truncation(**kwargs)


def test_everything_dropped_is_an_error(syn):
    rows = [{"prompt": "<bos> food cat dog <sep>", "completion": "big tiny <eos>"}]
    with pytest.raises(TokenizationError, match="every row was dropped"):
        tokenize_dataset(rows, syn, truncation=Truncation(max_length=4, strategy="drop"))


# --- collators ---------------------------------------------------------------------------------


def test_completion_collator_right_pads(syn):
    rows = [
        {"prompt": "<bos> food cat dog <sep>", "completion": "big tiny run <eos>", "r": 0.5},
        {"prompt": "<bos> food <sep>", "completion": "big <eos>", "r": 1.0},
    ]
    ds, _ = tokenize_dataset(rows, syn)
    pad = syn.pad_token_id
    batch = CompletionCollator(pad_token_id=pad, keep=("r",))(list(ds))
    assert batch["input_ids"].shape == (2, 9) and batch["input_ids"].dtype == torch.long
    assert batch["input_ids"][1].tolist() == ds[1]["input_ids"] + [pad] * 4
    assert batch["attention_mask"][1].tolist() == [1] * 5 + [0] * 4
    assert batch["completion_mask"][1].tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0]
    assert not (batch["completion_mask"].bool() & (batch["attention_mask"] == 0)).any()
    assert torch.equal(batch["r"], torch.tensor([0.5, 1.0]))
    wide = CompletionCollator(pad_token_id=pad, pad_to_multiple_of=8)(list(ds))
    assert wide["input_ids"].shape == (2, 16) and wide["completion_mask"][:, 9:].sum() == 0


def test_preference_collator_and_concatenation(syn):
    rows = [
        {"prompt": "<bos> food <sep>", "chosen": "big tiny run <eos>", "rejected": "go"},
        {"prompt": "<bos> food cat <sep>", "chosen": "big", "rejected": "tiny run <eos>"},
    ]
    ds, _ = tokenize_dataset(rows, syn)
    pad = syn.pad_token_id
    batch = PreferenceCollator(pad_token_id=pad)(list(ds))
    assert batch["chosen_input_ids"].shape == batch["rejected_input_ids"].shape == (2, 7)
    assert batch["rejected_input_ids"][0].tolist() == ds[0]["rejected_input_ids"] + [pad] * 2
    for side in ("chosen", "rejected"):
        pads = batch[f"{side}_attention_mask"] == 0
        assert (batch[f"{side}_input_ids"][pads] == pad).all()
        assert batch[f"{side}_completion_mask"][pads].sum() == 0
    both = concat_preference_batch(batch, pad_token_id=pad)
    assert both["input_ids"].shape == (4, 7)
    assert torch.equal(both["input_ids"][:2], batch["chosen_input_ids"])
    assert torch.equal(both["completion_mask"][2:], batch["rejected_completion_mask"])
