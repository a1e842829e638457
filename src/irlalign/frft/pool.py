"""FRFT's preference pool: the prompt/chosen/rejected records every round scores, selects from
and refits on, and a reward model's pairwise accuracy on a subset of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class PreferencePool:
    prompts: list[str]
    chosen: list[str]
    rejected: list[str]

    def __len__(self) -> int:
        return len(self.prompts)

    def rows(self, idx) -> list[dict[str, str]]:
        return [
            {"prompt": self.prompts[i], "chosen": self.chosen[i], "rejected": self.rejected[i]}
            for i in idx
        ]

    def head(self, n: int) -> PreferencePool:
        """The first ``n`` records (negative: all but the last ``-n``)."""
        return PreferencePool(self.prompts[:n], self.chosen[:n], self.rejected[:n])


def load_pool(source: str, split: str, max_rows: int | None = None) -> PreferencePool:
    """Validated prompt/chosen/rejected text pairs (chat-format pairs are refused: the
    embedders compare response texts)."""
    from irlalign.data.formats import check_dataset
    from irlalign.data.loading import load_rows

    rows = load_rows(source, split)
    if max_rows is not None:
        rows = rows.select(range(min(max_rows, len(rows))))
    fmt = check_dataset(rows, f"{source} [{split}]").fmt
    if fmt.kind != "preference" or fmt.conversational:
        raise ValueError(f"{source} [{split}]: FRFT needs prompt/chosen/rejected text pairs")
    return PreferencePool(list(rows["prompt"]), list(rows["chosen"]), list(rows["rejected"]))


def rm_accuracy(rm_path: str | Path, pool: PreferencePool, idx) -> float:
    """Pairwise accuracy r(chosen) > r(rejected) on the records ``idx``."""
    from irlalign.modeling.reward import load_reward_model

    idx = list(idx)
    if not idx:
        return float("nan")
    rm = load_reward_model(rm_path)
    prompts = [pool.prompts[i] for i in idx]
    chosen = rm.score(prompts, [pool.chosen[i] for i in idx])
    rejected = rm.score(prompts, [pool.rejected[i] for i in idx])
    return float(np.mean(chosen > rejected))
