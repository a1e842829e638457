"""Prompt/response text round trips, task.json round trip, config validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from irlalign.synthetic.build import task_from_json, task_to_json
from irlalign.synthetic.config import SyntheticConfig
from irlalign.synthetic.text import (
    parse_prompt,
    parse_response,
    prompt_text,
    response_text,
    sample_prompts,
)


def test_text_round_trip(default_task):
    task = default_task
    prompts = sample_prompts(task, 20, np.random.default_rng(0))
    for k, w in zip(prompts.topics, prompts.words, strict=True):
        topic, words = parse_prompt(task, prompt_text(task, k, w))
        assert topic == k and np.array_equal(words, w)
    actions = np.array([3, 5, 7, task.eos_action])
    assert np.array_equal(parse_response(task, response_text(task, actions)), actions)


@pytest.mark.parametrize(
    "text, message",
    [
        ("cat dog", "must end with exactly one"),
        ("cat <eos> dog <eos>", "exactly one"),
        ("kitten <eos>", "unknown word"),
    ],
)
def test_bad_responses_are_named(default_task, text, message):
    with pytest.raises(ValueError, match=message):
        parse_response(default_task, text)


def test_task_json_round_trip(default_task):
    data = json.loads(json.dumps(task_to_json(default_task)))
    back = task_from_json(data)
    for name in ("ref_words", "r_topic", "r_pair", "r_end"):
        np.testing.assert_array_equal(getattr(back, name), getattr(default_task, name))
    np.testing.assert_allclose(back.ref_table(0.8), default_task.ref_table(0.8), rtol=1e-13)
    assert back.config == default_task.config


def test_config_rejects_unknown_and_invalid_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_wrods: 10\n")
    with pytest.raises(ValueError, match="bad.yaml: unknown synthetic config keys: n_wrods"):
        SyntheticConfig.from_file(bad)
    with pytest.raises(ValueError, match="demonstrator"):
        SyntheticConfig(demonstrator="nobody")
    assert SyntheticConfig(seed=1).pretrain_hash() != SyntheticConfig(seed=2).pretrain_hash()
    assert SyntheticConfig(n_demos=5).pretrain_hash() == SyntheticConfig().pretrain_hash()
