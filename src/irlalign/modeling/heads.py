"""Extra trainable heads on a Hugging Face model (IQLearn's value-head ablation, AVA's reward head).

A head lives in an ``nn.ModuleDict`` named :data:`HEADS_ATTR` on the base model, so optimisers,
DDP/FSDP wrappers, device moves and ``Trainer`` resumes treat it like any other parameter. On disk
the checkpoint stays an ordinary model folder (``from_pretrained`` never sees the head's keys) plus
``irl_heads.safetensors`` and ``irl_heads.json`` (what to rebuild), written and read here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irlalign.modeling.forward import unwrap

HEADS_ATTR = "irl_heads"
HEADS_WEIGHTS = "irl_heads.safetensors"
HEADS_CONFIG = "irl_heads.json"
# A scalar state-value head V_φ(s): IQLearn's value-head variant and PPO's critic.
VALUE_HEAD = "value"
# AVA reward-head sequence scores: the final token's posterior mean, or the summed posterior mean.
SEQUENCE_SCORES = ("last", "sum")
# The causal attention weights were called "attn" before the all-positions form existed.
LEGACY_RWT = {"attn": "attn_causal"}


class ScalarHead(nn.Module):
    """(…, d) hidden states -> (…,) fp32 scalars, e.g. a state value V_φ(s)."""

    kind = "scalar"

    def __init__(self, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(hidden_size, 1, dtype=torch.float32)
        # Zero init: V_φ ≡ 0 at step 0, so training starts from the plain MLE model's rewards
        # r_t = log π(a_t|s_t) instead of from random offsets.
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "hidden_size": self.hidden_size}


class GaussianRewardHead(nn.Module):
    """AVA's reward head RHead(h; φ) (Cai et al. 2024, Eq. 9): (…, d) -> μ, σ, each (…,) fp32.

    Linear d -> 2, μ = out₀, σ = softplus(out₁) + floor (σ never reaches 0). Zero weight and bias
    (0, log(e − 1)) give μ = 0, σ = 1 at init: the posterior starts at the N(0, 1) prior. ``shift``,
    ``rwt``, ``rwt_rescale`` and ``score`` are how the head was trained to be read; they travel with
    it so a reloaded reward model scores exactly as during training. ``score`` is the sequence
    score its objective trains: ``"last"``, the final token's posterior mean (AVA-p's contrastive
    term), or ``"sum"``, the summed posterior mean of the scored transitions (AVA-d). Heads saved
    before these options existed load as they were trained: ``rwt: attn`` as ``attn_causal``, no
    ``score`` as ``"last"``.
    """

    kind = "gaussian"

    def __init__(
        self,
        hidden_size: int,
        shift: int = 1,
        rwt: str = "attn_full",
        rwt_rescale: bool = True,
        sigma_floor: float = 1e-4,
        score: str = "last",
    ):
        super().__init__()
        if score not in SEQUENCE_SCORES:
            raise ValueError(f"score must be one of {SEQUENCE_SCORES}, got {score!r}")
        self.hidden_size, self.shift = hidden_size, shift
        self.rwt = LEGACY_RWT.get(rwt, rwt)
        self.rwt_rescale, self.sigma_floor, self.score = rwt_rescale, sigma_floor, score
        self.proj = nn.Linear(hidden_size, 2, dtype=torch.float32)
        nn.init.zeros_(self.proj.weight)
        with torch.no_grad():
            self.proj.bias.copy_(torch.tensor([0.0, math.log(math.e - 1.0)]))

    def forward(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        out = self.proj(hidden.to(self.proj.weight.dtype)).float()
        return out[..., 0], F.softplus(out[..., 1]) + self.sigma_floor

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "hidden_size": self.hidden_size,
            "shift": self.shift,
            "rwt": self.rwt,
            "rwt_rescale": self.rwt_rescale,
            "sigma_floor": self.sigma_floor,
            "score": self.score,
        }


class PreferenceAttentionHead(nn.Module):
    """Preference Transformer (Kim et al. 2023) score S(y) = Σ_t w_t r_t.

    r_t a per-step scalar reward, w_t = (1/|y|) Σ_i softmax_t(q_i·k_t/√d) over valid tokens
    (non-causal), the same form as AVA's Eq. 11; trained with a Bradley–Terry loss on S.
    """

    kind = "preference_attention"

    def __init__(self, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.q = nn.Linear(hidden_size, hidden_size, dtype=torch.float32)
        self.k = nn.Linear(hidden_size, hidden_size, dtype=torch.float32)
        self.r = nn.Linear(hidden_size, 1, dtype=torch.float32)

    def forward(self, hidden: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, d), (B, T) -> weights w (B, T) and per-step rewards r (B, T), 0 on pads."""
        h = hidden.to(self.q.weight.dtype)
        m = attention_mask.bool()
        logits = self.q(h) @ self.k(h).transpose(1, 2) / math.sqrt(h.shape[-1])
        att = logits.masked_fill(~m[:, None, :], float("-inf")).softmax(-1)
        att = torch.where(m[:, :, None], att, torch.zeros_like(att))
        w = att.sum(1) / m.sum(1, keepdim=True).clamp_min(1)
        r = torch.where(m, self.r(h).squeeze(-1), torch.zeros_like(w))
        return w, r

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "hidden_size": self.hidden_size}


class LinearQHead(nn.Module):
    """A freshly initialised Q head nn.Linear(d, V) (AVA's "w/o ptq" ablation, Eq. 8)."""

    kind = "linear_q"

    def __init__(self, hidden_size: int, vocab_size: int):
        super().__init__()
        self.hidden_size, self.vocab_size = hidden_size, vocab_size
        self.linear = nn.Linear(hidden_size, vocab_size, dtype=torch.float32)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.linear(hidden.to(self.linear.weight.dtype))

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "hidden_size": self.hidden_size, "vocab_size": self.vocab_size}


HEAD_KINDS: dict[str, type[nn.Module]] = {
    cls.kind: cls for cls in (ScalarHead, GaussianRewardHead, PreferenceAttentionHead, LinearQHead)
}


def attach_head(model: nn.Module, name: str, head: nn.Module) -> nn.Module:
    """Register ``head`` under ``name`` on the base model (idempotent for an existing name)."""
    base = unwrap(model)
    heads = getattr(base, HEADS_ATTR, None)
    if heads is None:
        heads = nn.ModuleDict()
        setattr(base, HEADS_ATTR, heads)
    if name not in heads:
        param = next(base.parameters())
        heads[name] = head.to(param.device)
    return heads[name]


def get_head(model: nn.Module, name: str) -> nn.Module | None:
    heads = getattr(unwrap(model), HEADS_ATTR, None)
    return heads[name] if heads is not None and name in heads else None


def split_head_state(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Split a model state dict into (model keys, ``"<head>.<param>"`` keys of the heads)."""
    marker = f"{HEADS_ATTR}."
    model_state, head_state = {}, {}
    for key, value in state.items():
        if marker in key:
            head_state[key.split(marker, 1)[1]] = value
        else:
            model_state[key] = value
    return model_state, head_state


def save_heads(model: nn.Module, folder: str | Path, head_state: dict[str, Tensor]) -> None:
    """Write the heads' weights and rebuild specs next to a saved model (no-op without heads)."""
    heads = getattr(unwrap(model), HEADS_ATTR, None)
    if not heads:
        return
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in head_state.items()}
    save_file(tensors, str(folder / HEADS_WEIGHTS), metadata={"format": "pt"})
    specs = {name: head.spec() for name, head in heads.items()}
    (folder / HEADS_CONFIG).write_text(json.dumps(specs, indent=2) + "\n")


def save_pretrained_with_heads(model: nn.Module, folder: str | Path, **kwargs: Any) -> None:
    """``model.save_pretrained`` without the heads' keys, then the heads beside it."""
    model_state, head_state = split_head_state(model.state_dict())
    model.save_pretrained(folder, state_dict=model_state, **kwargs)
    save_heads(model, folder, head_state)


def load_heads(model: nn.Module, folder: str | Path) -> list[str]:
    """Rebuild and load the heads saved in ``folder`` onto ``model``; returns their names."""
    folder = Path(folder)
    config = folder / HEADS_CONFIG
    if not config.is_file():
        return []
    from safetensors.torch import load_file

    specs = json.loads(config.read_text())
    tensors = load_file(str(folder / HEADS_WEIGHTS))
    for name, spec in specs.items():
        spec = dict(spec)
        kind = spec.pop("kind")
        if kind not in HEAD_KINDS:
            raise ValueError(f"{config}: unknown head kind {kind!r} for head {name!r}")
        head = attach_head(model, name, HEAD_KINDS[kind](**spec))
        prefix = f"{name}."
        own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        head.load_state_dict(own, strict=True)
    return list(specs)
