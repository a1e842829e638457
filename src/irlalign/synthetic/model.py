"""The word-level tokenizer and the tiny Llama-style causal LM of the benchmark.

Both are ordinary Hugging Face objects saved with `save_pretrained`, so that everything downstream
loads them with `AutoTokenizer` / `AutoModelForCausalLM` and never knows the task is synthetic.
"""

from __future__ import annotations

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from irlalign.synthetic.config import SyntheticConfig
from irlalign.synthetic.language import BOS, EOS, PAD, SEP, SPECIAL_TOKENS, Task

# Conversational data renders as `<bos> user-text <sep> assistant-text <eos>`, the same strings
# the prompt/completion datasets hold.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %} {{ m['content'] }} <sep>"
    "{% elif m['role'] == 'assistant' %} {{ m['content'] }} {{ eos_token }}{% endif %}"
    "{% endfor %}"
)


def vocabulary(task: Task) -> list[str]:
    """Token strings in id order: special tokens, topics, words."""
    return [*SPECIAL_TOKENS, *task.topics, *task.words]


def action_token_ids(task: Task) -> np.ndarray:
    """Token id of each action index (words, then `<eos>`)."""
    offset = len(SPECIAL_TOKENS) + task.config.n_topics
    return np.array([offset + i for i in range(task.config.n_words)] + [SPECIAL_TOKENS.index(EOS)])


def build_tokenizer(task: Task) -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(vocabulary(task))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=None))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, bos_token=BOS, eos_token=EOS, sep_token=SEP
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_model(config: SyntheticConfig, vocab_size: int, seed: int) -> LlamaForCausalLM:
    """A freshly initialised tiny Llama; `config.model` overrides its sizes."""
    max_len = 2 + config.prompt_words_max + 1 + config.horizon
    kwargs = {
        "vocab_size": vocab_size,
        "max_position_embeddings": max(64, max_len),
        "pad_token_id": SPECIAL_TOKENS.index(PAD),
        "bos_token_id": SPECIAL_TOKENS.index(BOS),
        "eos_token_id": SPECIAL_TOKENS.index(EOS),
        "tie_word_embeddings": False,
        "num_key_value_heads": config.model.get("num_attention_heads", 4),
        **config.model,
    }
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**kwargs))
