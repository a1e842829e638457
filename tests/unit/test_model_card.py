"""Model cards in every final checkpoint (a `Trainer` method and an RL loop), `push_to_hub`
uploading that folder (the upload function replaced: the Hub is unreachable here), one-line
errors without `hub_model_id` or without the Hub, and the warning when a chat policy is trained
against a reward model that recorded plain-text training rows."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml

from conftest import raw_config
from irlalign.cards import HubPushError, push_folder, recorded_data_format
from irlalign.data.formats import DataWarning
from irlalign.methods import resolve, train


@pytest.fixture
def fake_hub(monkeypatch):
    """Replaces the two Hub calls; records what the upload saw in the folder."""
    import huggingface_hub

    calls: list[dict] = []

    def upload_folder(*, repo_id, folder_path, **kwargs):
        files = sorted(p.name for p in Path(folder_path).iterdir())
        card = (Path(folder_path) / "README.md").read_text()
        calls.append({"repo_id": repo_id, "folder": folder_path, "files": files, "card": card})

    monkeypatch.setattr(huggingface_hub, "create_repo", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    return calls


def test_trainer_method_writes_a_card_and_pushes_the_final_folder(
    smoke_task_dir, tmp_path, fake_hub
):
    raw = raw_config(smoke_task_dir, tmp_path / "rm", "reward", max_steps=2)
    raw["training"].update(push_to_hub=True, hub_model_id="someone/tiny-rm")
    results = train(resolve("reward", raw))
    final = Path(results["final_checkpoint"])
    card = (final / "README.md").read_text()
    assert [c["repo_id"] for c in fake_hub] == ["someone/tiny-rm"]
    assert fake_hub[0]["folder"] == str(final) and "README.md" in fake_hub[0]["files"]
    assert fake_hub[0]["card"] == card
    assert "arXiv 2203.02155" in card  # the method's paper
    assert str(smoke_task_dir / "pi_init") in card and str(smoke_task_dir / "preferences") in card
    assert "| method.margin | 0 |" in card and "| training.max_steps | 2 |" in card
    assert "| transformers |" in card and "| torch |" in card
    assert 'irlalign.load_reward_model(snapshot_download("someone/tiny-rm"))' in card
    assert "AutoModelForCausalLM" not in card  # a reward model, not a policy
    recorded = json.loads((tmp_path / "rm" / "eval.json").read_text())
    assert recorded["hub_url"] == "https://huggingface.co/someone/tiny-rm"
    assert recorded["data_format"] == {"kind": "preference", "conversational": False}
    assert recorded_data_format(final) == recorded["data_format"]


def test_rl_loop_card_has_the_policy_usage_and_gold_metrics(smoke_task_dir, tmp_path, fake_hub):
    raw = {
        "model": {"path": str(smoke_task_dir / "pi_init")},
        "data": {"train": str(smoke_task_dir / "demos")},
        "method": {
            "reward_model": "gold",
            "k": 2,
            "prompts_per_step": 2,
            "sampling": {"max_new_tokens": 6},
        },
        "training": {
            "output_dir": str(tmp_path / "rl"),
            "max_steps": 1,
            "use_cpu": True,
            "disable_tqdm": True,
            "push_to_hub": True,
            "hub_model_id": "someone/tiny-policy",
        },
        "eval": {"synthetic_task": str(smoke_task_dir), "samples": 1},
    }
    results = train(resolve("rloo", raw))
    final = Path(results["final_checkpoint"])
    card = (final / "README.md").read_text()
    assert fake_hub[0]["folder"] == str(final) and fake_hub[0]["repo_id"] == "someone/tiny-policy"
    assert "arXiv 2402.14740" in card and "| method.reward_model | gold |" in card
    assert "| method.sampling.max_new_tokens | 6 |" in card
    assert 'AutoModelForCausalLM.from_pretrained("someone/tiny-policy")' in card
    gold = results["synthetic"]["normalised_score"]
    assert f"| synthetic/normalised_score | {gold:.4g} |" in card
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["pipeline_tag"] == "text-generation" and "rloo" in front["tags"]


def test_push_without_hub_model_id_is_a_config_error(smoke_task_dir, tmp_path):
    raw = raw_config(smoke_task_dir, tmp_path / "x", "sft")
    loop = {**raw, "method": {"reward_model": "gold"}}
    loop["training"] = {"output_dir": str(tmp_path / "y"), "push_to_hub": True}
    with pytest.raises(ValueError, match=r"^training\.hub_model_id: required with"):
        resolve("rloo", loop)
    raw["training"]["push_to_hub"] = True
    with pytest.raises(ValueError, match=r"^training\.hub_model_id: required with"):
        train(resolve("sft", raw))  # before any model or data loads
    assert not (tmp_path / "x" / "checkpoints").exists()


def test_an_unreachable_hub_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "README.md").write_text("card")
    with pytest.raises(HubPushError) as err:
        push_folder(tmp_path, "someone/model")
    message = str(err.value)
    assert message.startswith(f"training.push_to_hub: pushing {tmp_path} to someone/model failed")
    assert "\n" not in message and "saved there" in message


def test_chat_policy_against_a_plain_text_reward_model_warns_once(smoke_task_dir, tmp_path):
    from irlalign.loops.setup import load_prompts
    from irlalign.modeling.load import load_tokenizer

    tokenizer = load_tokenizer(str(smoke_task_dir / "pi_init"))
    assert tokenizer.chat_template  # the tiny model's tokenizer has one
    rm = tmp_path / "rm" / "checkpoints" / "final"
    rm.mkdir(parents=True)
    record = {"data_format": {"kind": "preference", "conversational": False}}
    (tmp_path / "rm" / "eval.json").write_text(json.dumps(record))
    chats = tmp_path / "chats.jsonl"
    row = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    chats.write_text(json.dumps(row) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_prompts(str(chats), "train", tokenizer, reward_model=str(rm))
        record["data_format"]["conversational"] = True  # a chat reward model: no warning
        (tmp_path / "rm" / "eval.json").write_text(json.dumps(record))
        load_prompts(str(chats), "train", tokenizer, reward_model=str(rm))
    lines = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(lines) == 1 and lines[0].startswith(f"method.reward_model: {rm} was trained on")
