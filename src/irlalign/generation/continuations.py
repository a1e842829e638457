"""On-policy continuations for the prompts of a right-padded training batch (online IQLearn).

A reconstruction of Wulfmeier et al. 2024's online variant (the paper does not spell it out):
full continuations from the current policy, `do_sample` at temperature 1 with no top-k/top-p,
dropout off, stopped at the first EOS or at `max_new_tokens` (then truncated, not terminal), and
re-collated right-padded like the expert data. This works on token ids rather than through
`HFSampler`'s text interface (decoding a prompt and tokenising it again need not give the same
ids), with the same decoding loop (`irlalign.generation.sampling.sample_tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import LogitsProcessorList
from transformers.generation.logits_process import TemperatureLogitsWarper

from irlalign.data.collate import pad_right
from irlalign.generation.sampling import sample_tokens


@dataclass
class PolicySamples:
    """Right-padded prompt + sampled response, the layout of the expert batch.

    ``input_ids`` / ``attention_mask`` / ``completion_mask`` (B, L); ``completion_mask`` covers the
    response up to and including its first EOS; ``finished`` (B,) the response ended with EOS
    (False: it hit ``max_new_tokens`` and is truncated).
    """

    input_ids: Tensor
    attention_mask: Tensor
    completion_mask: Tensor
    finished: Tensor


def batch_prompts(
    input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor, rows: int
) -> list[list[int]]:
    """Prompt ids of the first ``rows`` rows of a right-padded batch: the attended tokens before
    the first response token (all attended tokens of a row without one)."""
    before_response = completion_mask.long().cumsum(1) == 0
    keep = attention_mask.bool() & before_response
    return [input_ids[b][keep[b]].tolist() for b in range(min(rows, input_ids.shape[0]))]


def _left_pad(prompts: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    # `generate` appends on the right, so prompts are left-padded; the attention mask makes the
    # model's position ids start at each row's first real token.
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, p in enumerate(prompts):
        ids[b, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[b, width - len(p) :] = 1
    return ids, mask


def cut_at_eos(generated: list[int], eos_id: int) -> tuple[list[int], bool]:
    """The response up to and including its first EOS, and whether it had one. Without an EOS,
    `generate` ran to the length budget for this row, so every id is a sampled token (a sampled
    pad id included): nothing is stripped."""
    if eos_id in generated:
        return generated[: generated.index(eos_id) + 1], True
    return generated, False


def collate_samples(
    prompts: list[list[int]], responses: list[list[int]], finished: list[bool], pad_id: int
) -> PolicySamples:
    """Right-pad prompt + response rows like `irlalign.data.collate.CompletionCollator`."""
    rows = [p + r for p, r in zip(prompts, responses, strict=True)]
    width = max(len(r) for r in rows)
    attention = [[1] * len(r) for r in rows]
    completion = [[0] * len(p) + [1] * len(r) for p, r in zip(prompts, responses, strict=True)]
    return PolicySamples(
        input_ids=pad_right(rows, pad_id, width),
        attention_mask=pad_right(attention, 0, width),
        completion_mask=pad_right(completion, 0, width),
        finished=torch.tensor(finished, dtype=torch.bool),
    )


@torch.no_grad()
def sample_continuations(
    model: torch.nn.Module,
    prompts: list[list[int]],
    *,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
) -> PolicySamples:
    """One sampled continuation per prompt from ``model`` (an unwrapped HF causal LM), on the
    CPU in the layout of the expert batch. Dropout is off while sampling (``model.eval()``) and
    the previous mode is restored afterwards."""
    ids, mask = _left_pad(prompts, pad_id)
    # No top-k / top-p: the samples must follow π itself (at `temperature`).
    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    was_training = model.training
    model.eval()
    try:
        out, _ = sample_tokens(
            model,
            ids.to(model.device),
            mask.to(model.device),
            max_new_tokens=max_new_tokens,
            processors=warpers,
            eos_id=eos_id,
            pad_id=pad_id,
        )
    finally:
        model.train(was_training)
    cut = [cut_at_eos(row, eos_id) for row in out[:, ids.shape[1] :].tolist()]
    return collate_samples(prompts, [r for r, _ in cut], [f for _, f in cut], pad_id)
