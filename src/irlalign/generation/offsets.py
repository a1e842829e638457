"""Per-token rewards from one tokenizer onto another's tokens through character offsets, for
when a reward model with its own tokenizer scores a policy's response."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

Span = tuple[int, int]  # [start, end) character offsets into the same response string


def map_rewards_by_offsets(
    rm_spans: Sequence[Span], rm_rewards: Sequence[float], policy_spans: Sequence[Span]
) -> list[float]:
    """Move each reward-model token's reward to the policy token whose span contains the RM
    token's last character. RM tokens with an empty span (special tokens) or past the last
    policy span go to the final policy token, so the total reward is always preserved."""
    if len(rm_spans) != len(rm_rewards):
        raise ValueError("one reward per reward-model span is required")
    if not policy_spans:
        raise ValueError("the policy response has no tokens to receive rewards")
    out = [0.0] * len(policy_spans)
    keep = [k for k, (s, e) in enumerate(policy_spans) if e > s]
    ends = [policy_spans[k][1] for k in keep]
    last = len(policy_spans) - 1
    for (s, e), r in zip(rm_spans, rm_rewards, strict=True):
        j = bisect.bisect_left(ends, e) if e > s else len(keep)
        out[keep[j] if j < len(keep) else last] += float(r)
    return out


def prefix_spans(tokenizer, ids: Sequence[int]) -> list[Span]:
    """Character span of each token in ``tokenizer.decode(ids, skip_special_tokens=True)``,
    from decoding growing prefixes: it matches what was sampled for any tokenizer (no offset
    mapping needed), and special tokens get empty spans."""
    spans, start = [], 0
    for k in range(1, len(ids) + 1):
        end = len(tokenizer.decode(ids[:k], skip_special_tokens=True))
        end = max(end, start)  # decoding may merge or clean up characters; spans never go back
        spans.append((start, end))
        start = end
    return spans
