"""Parts of FRFT, Filtered Reward Fine-Tuning (Krishna & Sahoo, arXiv 2412.10529).

Each round scores the pool by how similar the frozen policy's sample is to the stored chosen and
rejected responses (`embedders`, `cosine_scores`), selects a subset with a named rule
(`selection`), and refits the reward model on it. The outer loop composes these parts.

`embedders` imports torch; it is loaded on first use so that `irlalign.frft.selection` stays a
numpy-only import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from irlalign.frft.selection import (
    DEFAULT_TAU,
    SELECTORS,
    THRESHOLD_RULES,
    Selection,
    SelectionShortfallWarning,
    SubsetSelector,
    both_gt_top_sum,
    cosine_scores,
    either_ge_in_order,
    get_selector,
    half_chosen_half_rejected,
    random,
    rank_descending,
    resolve_count,
    split_train_val,
    top_chosen,
    top_mean,
    top_rejected,
)

if TYPE_CHECKING:
    from irlalign.frft.embedders import (
        BackboneEmbedder,
        Embedder,
        SentenceTransformerEmbedder,
        load_embedder,
        masked_mean,
        minilm_folder,
    )

_EMBEDDER_NAMES = frozenset(
    {
        "BackboneEmbedder",
        "Embedder",
        "SentenceTransformerEmbedder",
        "load_embedder",
        "masked_mean",
        "minilm_folder",
    }
)


def __getattr__(name: str) -> Any:
    if name in _EMBEDDER_NAMES:
        from irlalign.frft import embedders

        return getattr(embedders, name)
    raise AttributeError(f"module 'irlalign.frft' has no attribute {name!r}")


__all__ = [
    "DEFAULT_TAU",
    "SELECTORS",
    "THRESHOLD_RULES",
    "BackboneEmbedder",
    "Embedder",
    "Selection",
    "SelectionShortfallWarning",
    "SentenceTransformerEmbedder",
    "SubsetSelector",
    "both_gt_top_sum",
    "cosine_scores",
    "either_ge_in_order",
    "get_selector",
    "half_chosen_half_rejected",
    "load_embedder",
    "masked_mean",
    "minilm_folder",
    "random",
    "rank_descending",
    "resolve_count",
    "split_train_val",
    "top_chosen",
    "top_mean",
    "top_rejected",
]
