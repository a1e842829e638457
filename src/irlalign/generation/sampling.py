"""The `Sampler` protocol of the online methods and its Hugging Face implementation.

A sampler turns text prompts into `Rollouts`: right-padded prompt + response token ids with the
masks every loss in `irlalign.losses` expects, the decoded response texts, and the per-token
log-probabilities of the sampled tokens under the distribution they were actually drawn from
(temperature, top-k and top-p applied), read from the generation pass itself: no second forward.
`sample_tokens` is `generate`'s multinomial sampling (the same tokens for the same seed) in a
loop of its own that drops finished rows from the forward and never copies the KV cache.
A vLLM backend can implement the same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = no top-k filter
    max_new_tokens: int = 64
    stop_strings: tuple[str, ...] = ()  # e.g. turn markers; the response ends after the match
    batch_size: int = 64  # prompts per `generate` call

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0 (use a small value for near-greedy)")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("top_k >= 0, max_new_tokens >= 1 and batch_size >= 1 are required")
        self.stop_strings = tuple(self.stop_strings)

    @property
    def filters(self) -> bool:
        """Whether top-k or top-p cut the distribution (the policy's own is not sampled)."""
        return self.top_k > 0 or self.top_p < 1.0

    @classmethod
    def coerce(cls, value: SamplingConfig | dict | None) -> SamplingConfig:
        """YAML gives a mapping (or nothing); code may pass the dataclass itself."""
        if isinstance(value, SamplingConfig):
            return value
        return cls(**(value or {}))


@dataclass
class Rollouts:
    """``n`` samples per prompt, grouped: rows [i·n, (i+1)·n) answer prompt i.

    ``input_ids``/``attention_mask``/``completion_mask`` (B, L) right-padded; ``logps`` (B, L − 1)
    action-aligned log q(a_t|s_t) of the sampling distribution q (the policy at the sampling
    temperature, after top-k / top-p), 0 outside the response; ``finished`` (B,) the response
    ended with EOS or a stop string (not the length budget)."""

    prompts: list[str]
    responses: list[str]
    input_ids: Tensor
    attention_mask: Tensor
    completion_mask: Tensor
    logps: Tensor
    finished: Tensor
    n: int


@runtime_checkable
class Sampler(Protocol):
    def sample(self, prompts: Sequence[str], n: int = 1) -> Rollouts: ...


def _cut(ids: list[int], eos_id: int | None, pad_id: int) -> tuple[list[int], bool]:
    """Generated ids up to and including the first EOS; trailing pads dropped."""
    if eos_id is not None and eos_id in ids:
        return ids[: ids.index(eos_id) + 1], True
    while ids and ids[-1] == pad_id and pad_id != eos_id:
        ids = ids[:-1]
    return ids, False


def _cut_at_stop(tokenizer, ids: list[int], stops: Sequence[str]) -> list[int] | None:
    """The shortest prefix of ``ids`` whose text contains a stop string, or None."""
    if not stops or not any(s in tokenizer.decode(ids) for s in stops):
        return None
    for k in range(1, len(ids) + 1):
        if any(s in tokenizer.decode(ids[:k]) for s in stops):
            return ids[:k]
    return None


class StopOnStrings(StoppingCriteria):
    """Per-row stop once the decoded response contains a stop string. Decoding the text (rather
    than transformers' `stop_strings`, which pre-tokenises every vocabulary entry) works with any
    tokenizer, word-level ones included."""

    def __init__(self, tokenizer, stops: Sequence[str], prompt_width: int):
        self.tokenizer, self.stops, self.prompt_width = tokenizer, tuple(stops), prompt_width

    def __call__(self, input_ids: Tensor, scores: Tensor, **kwargs) -> Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width :])
        hits = [any(s in t for s in self.stops) for t in texts]
        return torch.tensor(hits, dtype=torch.bool, device=input_ids.device)


class RecordSampledLogps(LogitsProcessor):
    """The last processor of `generate`: keeps the log-softmax of the final (warped) scores of
    one step, and at the next step reads the log-probability of the token just sampled from it.
    Memory is one (B, V) block whatever the response length."""

    def __init__(self) -> None:
        self.logps: list[Tensor] = []
        self._last: Tensor | None = None

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        self._take(input_ids[:, -1])
        self._last = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def _take(self, tokens: Tensor) -> None:
        if self._last is not None:
            self.logps.append(self._last.gather(1, tokens[:, None]).squeeze(1))

    def finish(self, last_tokens: Tensor) -> Tensor:
        """(B, T) log-probabilities of the T generated tokens."""
        self._take(last_tokens)
        self._last = None
        return torch.stack(self.logps, dim=1) if self.logps else last_tokens[:, :0].float()


def sampling_processors(cfg: SamplingConfig) -> LogitsProcessorList:
    """The warpers `generate` would add for ``cfg`` (temperature, then top-k, then top-p), in
    its order, built here so that the recorder runs after them."""
    procs = LogitsProcessorList()
    if cfg.temperature != 1.0:
        procs.append(TemperatureLogitsWarper(cfg.temperature))
    if cfg.top_k > 0:
        procs.append(TopKLogitsWarper(top_k=cfg.top_k))
    if cfg.top_p < 1.0:
        procs.append(TopPLogitsWarper(top_p=cfg.top_p))
    return procs


# Generation-config fields that make `generate` change the distribution beyond temperature,
# top-k and top-p (with their neutral values): a model that sets any of them samples through
# `generate` itself, so that what it samples stays what it did before.
_PROCESSING_DEFAULTS = {
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "min_length": 0,
    "min_new_tokens": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
    "min_p": None,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "guidance_scale": None,
    "watermarking_config": None,
    "cache_implementation": None,
    "prefill_chunk_size": None,
}


def decoding_loop_supported(model) -> bool:
    """Whether `sample_tokens` may run its own loop for ``model`` (a decoder-only HF model with
    the default dynamic cache and no distribution-changing generation settings); otherwise it
    calls `generate`."""
    from transformers import PreTrainedModel

    try:  # recent transformers' per-layer cache; older versions sample through `generate`
        from transformers.cache_utils import DynamicLayer  # noqa: F401
    except ImportError:
        return False
    config = getattr(model, "config", None)
    gen = getattr(model, "generation_config", None)
    if not isinstance(model, PreTrainedModel) or config is None or gen is None:
        return False
    if config.is_encoder_decoder or not getattr(model, "_supports_default_dynamic_cache", bool)():
        return False
    if getattr(model, "hf_quantizer", None) is not None:
        return False
    return all(getattr(gen, k, v) in (v, None) for k, v in _PROCESSING_DEFAULTS.items())


def _preallocated_cache(model, capacity: int):
    """`generate`'s default `DynamicCache`, whose full-attention layers write each step's keys
    and values into a buffer of ``capacity`` positions instead of concatenating: the same
    tensors reach the attention (views of the filled part), without copying the whole cache at
    every step, which was most of the sampling time on small models."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    class BufferedLayer(DynamicLayer):
        def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                shape = (*key_states.shape[:2], capacity, key_states.shape[-1])
                self._k = key_states.new_empty(shape)
                self._v = value_states.new_empty((*shape[:3], value_states.shape[-1]))
                self._filled = 0
            start, self._filled = self._filled, self._filled + key_states.shape[-2]
            self._k[:, :, start : self._filled] = key_states
            self._v[:, :, start : self._filled] = value_states
            self.keys = self._k[:, :, : self._filled]
            self.values = self._v[:, :, : self._filled]
            return self.keys, self.values

        def batch_select_indices(self, indices: Tensor) -> None:
            if self.is_initialized:
                self._k, self._v = self._k[indices], self._v[indices]
                self.keys = self._k[:, :, : self._filled]
                self.values = self._v[:, :, : self._filled]

    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    layers = getattr(cache, "layers", None)
    if layers and all(type(layer) is DynamicLayer for layer in layers):
        cache.layers = [BufferedLayer() for _ in layers]
    return cache


def _eos_ids(model, eos_id: int | list[int] | None) -> list[int]:
    ids = eos_id if eos_id is not None else getattr(model.generation_config, "eos_token_id", None)
    if ids is None:
        return []
    return [int(i) for i in (ids if isinstance(ids, (list, tuple)) else [ids])]


def _logits_to_keep(model) -> dict:
    import inspect

    params = inspect.signature(model.forward).parameters
    return {"logits_to_keep": 1} if "logits_to_keep" in params else {}


@torch.no_grad()
def sample_tokens(
    model,
    input_ids: Tensor,
    attention_mask: Tensor,
    *,
    max_new_tokens: int,
    processors: LogitsProcessorList | None = None,
    n: int = 1,
    eos_id: int | list[int] | None = None,
    pad_id: int | None,
    stopping: StoppingCriteriaList | None = None,
) -> tuple[Tensor, Tensor]:
    """Multinomial sampling from ``model`` given left-padded prompts (B, P): the prompts with
    their ``n`` continuations each (B·n, P + T), pad after a row's EOS (any of ``eos_id``, by
    default the generation config's) or stop, and the (B·n, T) fp32 log-probabilities of the
    sampled tokens under the distribution they were drawn from (``processors`` applied).

    `generate`'s sampling loop without its per-step bookkeeping: the same forward inputs (2-D
    mask, position ids from it, dynamic cache, logits of the last position only), the same
    softmax and `torch.multinomial` call per step, so a seed draws the same tokens as
    `generate(do_sample=True)` with the same processors; models it does not cover
    (`decoding_loop_supported`) go through `generate` itself."""
    processors = processors or LogitsProcessorList()
    eos = _eos_ids(model, eos_id)
    if pad_id is None:  # as `generate` does: pad with the (first) EOS
        pad_id = eos[0] if eos else 0
    if n > 1:
        input_ids = input_ids.repeat_interleave(n, dim=0)
        attention_mask = attention_mask.repeat_interleave(n, dim=0)
    if not decoding_loop_supported(model):
        return _generate_tokens(
            model, input_ids, attention_mask, max_new_tokens, processors, eos, pad_id, stopping
        )
    rows, width = input_ids.shape
    device = input_ids.device
    seq = torch.full((rows, width + max_new_tokens), pad_id, dtype=torch.long, device=device)
    seq[:, :width] = input_ids
    mask = torch.ones((rows, width + max_new_tokens), dtype=attention_mask.dtype, device=device)
    mask[:, :width] = attention_mask
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    logps = torch.zeros((rows, max_new_tokens), dtype=torch.float32, device=device)
    unfinished = torch.ones(rows, dtype=torch.long, device=device)
    eos_t = torch.tensor(eos, dtype=torch.long, device=device)
    cache = _preallocated_cache(model, width + max_new_tokens)
    keep = _logits_to_keep(model)
    step_ids, length = input_ids, width
    live: Tensor | None = None  # rows still in the model's batch (None: all of them)
    for t in range(max_new_tokens):
        out = model(
            input_ids=step_ids,
            attention_mask=mask[:, :length] if live is None else mask[live, :length],
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            return_dict=True,
            **keep,
        )
        logits = out.logits[:, -1].to(copy=True, dtype=torch.float32)
        del out
        tokens, logps[:, t], scores = _draw(logits, processors, seq[:, :length], live, rows)
        if eos:
            tokens = tokens * unfinished + pad_id * (1 - unfinished)
        seq[:, length] = tokens
        length += 1
        if eos:
            unfinished = unfinished & ~torch.isin(tokens, eos_t)
        if stopping is not None:
            unfinished = unfinished & ~stopping(seq[:, :length], scores)
        if t + 1 == max_new_tokens or not bool(unfinished.any()):
            break
        positions = positions[:, -1:] + 1
        live, local = _shrink(unfinished, live, rows)
        if local is not None:
            cache.batch_select_indices(local)
            positions = positions[local]
        step_ids = tokens[:, None] if live is None else tokens[live, None]
    return seq[:, :length], logps[:, : length - width]


def _draw(
    logits: Tensor, processors: LogitsProcessorList, seq: Tensor, live: Tensor | None, rows: int
) -> tuple[Tensor, Tensor, Tensor]:
    """One step's tokens (rows,), their log q (rows,) and the final scores, from the logits of
    the ``live`` rows (None: all)."""
    scores = logits
    if live is not None:  # finished rows draw from a dummy uniform row, then get a pad
        scores = logits.new_zeros((rows, logits.shape[-1])).index_copy_(0, live, logits)
    scores = processors(seq, scores)
    probs = torch.nn.functional.softmax(scores, dim=-1)
    # `multinomial` draws one Exp(1) variate per (row, token) whatever the probabilities
    # (argmax p/q), so a row's token depends on its own probabilities only: dropping the
    # finished rows from the forward leaves every other row's draw as `generate` makes it.
    tokens = torch.multinomial(probs, num_samples=1).squeeze(1)
    # log q(a) of the drawn token only: no (B, V) log-softmax tensor
    logp = scores.gather(1, tokens[:, None]).squeeze(1) - scores.logsumexp(-1)
    return tokens, logp, scores


def _shrink(
    unfinished: Tensor, live: Tensor | None, rows: int
) -> tuple[Tensor | None, Tensor | None]:
    """The rows the next forward runs on, and the positions to keep in the current batch (None:
    no change). The batch shrinks once a quarter of its rows have finished, so the cache is
    copied a logarithmic number of times."""
    current = rows if live is None else live.numel()
    active = unfinished.nonzero().squeeze(1)
    if active.numel() > 0.75 * current:
        return live, None
    local = active if live is None else torch.searchsorted(live, active)
    return active, local


def _generate_tokens(model, ids, mask, max_new_tokens, processors, eos, pad_id, stopping):
    """`sample_tokens` through `model.generate` (the log-probs read by a last processor)."""
    recorder = RecordSampledLogps()
    procs = LogitsProcessorList([*processors, recorder])
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=True,
        # The warpers are ours (`processors`), so generate adds none of its own and the
        # recorder sees the final distribution; the model's generation defaults are
        # overridden by these neutral values.
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        logits_processor=procs,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos or None,
        pad_token_id=pad_id,
        stopping_criteria=stopping,
    )
    return out, recorder.finish(out[:, -1])


class HFSampler:
    """`sample_tokens` (`generate`'s sampling) in batches of left-padded prompts, recording the
    log-probabilities of the sampled tokens as it goes.

    ``progress``: a bar over the prompts on a terminal (None: when there is more than one
    batch, as in a best-of-N or scoring pool, not a loop step's single batch), always (True) or
    never (False); ``desc`` names it."""

    def __init__(
        self,
        model,
        tokenizer,
        config: SamplingConfig | None = None,
        *,
        progress: bool | None = None,
        desc: str = "sampling",
    ):
        self.model, self.tokenizer = model, tokenizer
        self.config = config or SamplingConfig()
        self.progress, self.desc = progress, desc

    @torch.no_grad()
    def sample(self, prompts: Sequence[str], n: int = 1) -> Rollouts:
        from irlalign.generation.progress import progress_bar

        rows: list[tuple[list[int], list[int], bool, list[float]]] = []
        step = self.config.batch_size
        enabled = self.progress
        if enabled is None and len(prompts) <= step:
            enabled = False  # one `generate` call: a loop step, not a pool
        with progress_bar(len(prompts), self.desc, unit="prompt", enabled=enabled) as bar:
            for start in range(0, len(prompts), step):
                rows.extend(self._generate(list(prompts[start : start + step]), n))
                bar.update(min(step, len(prompts) - start))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(len(p) + len(c) for p, c, _, _ in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        am = torch.zeros_like(ids)
        cm = torch.zeros_like(ids)
        logps = torch.zeros((len(rows), max(width - 1, 0)), dtype=torch.float32)
        for b, (p, c, _, lp) in enumerate(rows):
            ids[b, : len(p) + len(c)] = torch.tensor(p + c)
            am[b, : len(p) + len(c)] = 1
            cm[b, len(p) : len(p) + len(c)] = 1
            # action-aligned: index t scores ids[t + 1], so the response starts at len(p) − 1
            logps[b, len(p) - 1 : len(p) - 1 + len(c)] = torch.tensor(lp, dtype=torch.float32)
        texts = [self.tokenizer.decode(c, skip_special_tokens=True) for _, c, _, _ in rows]
        return Rollouts(
            prompts=[p for p in prompts for _ in range(n)],
            responses=texts,
            input_ids=ids,
            attention_mask=am,
            completion_mask=cm,
            logps=logps,
            finished=torch.tensor([f for _, _, f, _ in rows]),
            n=n,
        )

    def _generate(
        self, prompts: list[str], n: int
    ) -> list[tuple[list[int], list[int], bool, list]]:
        cfg, tok = self.config, self.tokenizer
        side, tok.padding_side = tok.padding_side, "left"
        try:
            enc = tok(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
        except Exception as err:  # tokenizers raises a bare Exception for unencodable text
            from irlalign.data.tokenize import encoding_failure

            where = [f"prompt {p[:60]!r}" for p in prompts]
            raise encoding_failure(tok, prompts, False, where, err) from err
        finally:
            tok.padding_side = side
        enc = enc.to(self.model.device)
        stopping = None
        if cfg.stop_strings:
            width = enc["input_ids"].shape[1]
            stopping = StoppingCriteriaList([StopOnStrings(tok, cfg.stop_strings, width)])
        was_training = self.model.training
        self.model.eval()
        try:
            out, sampled = sample_tokens(
                self.model,
                enc["input_ids"],
                enc["attention_mask"],
                max_new_tokens=cfg.max_new_tokens,
                processors=sampling_processors(cfg),
                n=n,
                pad_id=tok.pad_token_id,
                stopping=stopping,
            )
        finally:
            self.model.train(was_training)
        width = enc["input_ids"].shape[1]
        sampled = sampled.cpu()
        rows = []
        for b in range(out.shape[0]):
            prompt_ids = enc["input_ids"][b // n][enc["attention_mask"][b // n].bool()].tolist()
            raw = out[b, width:].tolist()
            completion, finished = _cut(raw, tok.eos_token_id, tok.pad_token_id)
            stopped = _cut_at_stop(tok, completion, cfg.stop_strings)
            if stopped is not None:  # before any padding, which may share the EOS id
                completion, finished = stopped, True
            rows.append((prompt_ids, completion, finished, sampled[b, : len(completion)].tolist()))
        return rows
