"""FRFT's preference pools: the prompt/chosen/rejected records every round scores, selects from
and refits on (and the held-out records the refit is validated on), with the true returns of
both responses when the data carries them; and the one text normalisation every embedded
response goes through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Columns of the synthetic benchmark's preference rows: each response's true return.
TRUE_COLUMNS = ("chosen_return", "rejected_return")


@dataclass
class PreferencePool:
    prompts: list[str]
    chosen: list[str]
    rejected: list[str]
    # True returns of the two responses (synthetic data only): the truth the labels were drawn
    # from, so accuracies can be measured against the true ordering, not only the noisy labels.
    chosen_true: np.ndarray | None = None
    rejected_true: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def has_truth(self) -> bool:
        return self.chosen_true is not None and self.rejected_true is not None

    def rows(self, idx) -> list[dict[str, str]]:
        return [
            {"prompt": self.prompts[i], "chosen": self.chosen[i], "rejected": self.rejected[i]}
            for i in idx
        ]

    def subset(self, idx) -> PreferencePool:
        """The records ``idx``, in that order."""
        idx = [int(i) for i in idx]
        pick = lambda xs: None if xs is None else np.asarray(xs)[idx]  # noqa: E731
        return PreferencePool(
            [self.prompts[i] for i in idx],
            [self.chosen[i] for i in idx],
            [self.rejected[i] for i in idx],
            pick(self.chosen_true),
            pick(self.rejected_true),
        )

    def head(self, n: int) -> PreferencePool:
        """The first ``n`` records (negative: all but the last ``-n``)."""
        return self.subset(range(len(self))[:n])

    def with_truth(self, score: Callable[[list[str], list[str]], np.ndarray]) -> PreferencePool:
        """This pool with true returns from ``score(prompts, responses)`` (a gold reward), for
        data that does not carry them."""
        chosen = np.asarray(score(self.prompts, self.chosen), dtype=np.float64)
        rejected = np.asarray(score(self.prompts, self.rejected), dtype=np.float64)
        return PreferencePool(self.prompts, self.chosen, self.rejected, chosen, rejected)


def load_pool(source: str, split: str, max_rows: int | None = None) -> PreferencePool:
    """Validated prompt/chosen/rejected text pairs (chat-format pairs are refused: the
    embedders compare response texts), with `chosen_return`/`rejected_return` when present."""
    from irlalign.data.formats import check_dataset
    from irlalign.data.loading import load_rows

    rows = load_rows(source, split)
    if max_rows is not None:
        rows = rows.select(range(min(max_rows, len(rows))))
    fmt = check_dataset(rows, f"{source} [{split}]").fmt
    if fmt.kind != "preference" or fmt.conversational:
        raise ValueError(f"{source} [{split}]: FRFT needs prompt/chosen/rejected text pairs")
    truth: list[np.ndarray | None] = [None, None]
    if set(TRUE_COLUMNS) <= set(rows.column_names):
        truth = [np.asarray(rows[c], dtype=np.float64) for c in TRUE_COLUMNS]
        if not all(np.isfinite(t).all() for t in truth):
            raise ValueError(f"{source} [{split}]: {' / '.join(TRUE_COLUMNS)} must be finite")
    return PreferencePool(
        list(rows["prompt"]), list(rows["chosen"]), list(rows["rejected"]), *truth
    )


def embedding_text(text: str, eos: str | None) -> str:
    """The form in which a response is embedded; stored responses and policy samples both go
    through it (after the same turn-marker cut), so that they are compared alike.

    Strips a trailing end-of-sequence marker ``eos`` (the policy tokenizer's EOS text) and the
    surrounding whitespace. Stripping, not appending, because policy samples are decoded without
    special tokens while stored data may spell the marker out (the synthetic responses end in a
    literal `<eos>`): left on one side only, a mean-pooling embedder sees an extra constant
    token whose weight is 1/length, so the similarity would partly measure the stored
    response's length. Appending to both would instead mark a sample cut at `max_new_tokens`
    as finished. An empty result becomes one space (an embedder needs a text).
    """
    text = text.strip()
    if eos and text.endswith(eos):
        text = text[: -len(eos)].rstrip()
    return text or " "
