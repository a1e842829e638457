"""The `Sampler` protocol of the online methods and its transformers-`generate` implementation.

A sampler turns text prompts into `Rollouts`: right-padded prompt + response token ids with the
masks every loss in `irlalign.losses` expects, the decoded response texts, and the per-token
log-probabilities of the sampled tokens under the distribution they were actually drawn from
(temperature, top-k and top-p applied), read from the generation pass itself: no second forward.
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


class HFSampler:
    """`model.generate` in batches (left-padded prompts), recording the log-probabilities of the
    sampled tokens as it goes.

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
        kwargs = {}
        if cfg.stop_strings:
            width = enc["input_ids"].shape[1]
            criteria = StopOnStrings(tok, cfg.stop_strings, width)
            kwargs = {"stopping_criteria": StoppingCriteriaList([criteria])}
        recorder = RecordSampledLogps()
        processors = sampling_processors(cfg)
        processors.append(recorder)
        was_training = self.model.training
        self.model.eval()
        try:
            out = self.model.generate(
                **enc,
                do_sample=True,
                # The warpers are ours (`processors`), so generate adds none of its own and the
                # recorder sees the final distribution; the model's generation defaults are
                # overridden by these neutral values.
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                logits_processor=processors,
                max_new_tokens=cfg.max_new_tokens,
                num_return_sequences=n,
                pad_token_id=tok.pad_token_id,
                **kwargs,
            )
        finally:
            self.model.train(was_training)
        width = enc["input_ids"].shape[1]
        sampled = recorder.finish(out[:, -1]).cpu()
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
