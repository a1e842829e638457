"""Extra trainable heads on a Hugging Face model (IQLearn's value-head ablation, AVA's reward head).

A head lives in an ``nn.ModuleDict`` named :data:`HEADS_ATTR` on the base model, so optimisers,
DDP/FSDP wrappers, device moves and ``Trainer`` resumes treat it like any other parameter. On disk
the checkpoint stays an ordinary model folder (``from_pretrained`` never sees the head's keys) plus
``irl_heads.safetensors`` and ``irl_heads.json`` (what to rebuild), written and read here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

HEADS_ATTR = "irl_heads"
HEADS_WEIGHTS = "irl_heads.safetensors"
HEADS_CONFIG = "irl_heads.json"


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


HEAD_KINDS: dict[str, type[nn.Module]] = {ScalarHead.kind: ScalarHead}


def register_head_kind(cls: type[nn.Module]) -> type[nn.Module]:
    """Make a head class rebuildable from ``irl_heads.json`` (it needs ``kind`` and ``spec()``)."""
    HEAD_KINDS[cls.kind] = cls
    return cls


def _base(model: nn.Module) -> nn.Module:
    while hasattr(model, "module"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def attach_head(model: nn.Module, name: str, head: nn.Module) -> nn.Module:
    """Register ``head`` under ``name`` on the base model (idempotent for an existing name)."""
    base = _base(model)
    heads = getattr(base, HEADS_ATTR, None)
    if heads is None:
        heads = nn.ModuleDict()
        setattr(base, HEADS_ATTR, heads)
    if name not in heads:
        param = next(base.parameters())
        heads[name] = head.to(param.device)
    return heads[name]


def get_head(model: nn.Module, name: str) -> nn.Module | None:
    heads = getattr(_base(model), HEADS_ATTR, None)
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
    heads = getattr(_base(model), HEADS_ATTR, None)
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
