"""The default benchmark is learnable and measurable: π_init is close to π_ref and the expert's
gap is many standard errors.

Measured on seed 0: π_init per-token KL(π_ref‖π_init) 0.025 nats, normalised score +0.004 ± 0.014,
and R(π*) − R(π_ref) = 4.54, 72 standard errors of the default eval (256 prompts × 4 samples).
"""

from __future__ import annotations

import pytest

from irlalign.synthetic.runner import eval_policy, init_kl

pytestmark = pytest.mark.learning


def test_pi_init_is_close_to_reference(default_task_dir):
    assert init_kl(default_task_dir) < 0.05
    row = eval_policy(default_task_dir, str(default_task_dir / "pi_init"))
    assert abs(row["normalised_score"]) < 0.1
    assert row["invalid_mass"] < 0.01


def test_expert_gap_is_many_standard_errors(default_task_dir):
    ref = eval_policy(default_task_dir, "oracle:ref_T1")
    gap = ref["expert_return"] - ref["ref_return"]
    assert gap >= 10 * ref["gold_return_se"]
    expert = eval_policy(default_task_dir, "oracle:expert")
    assert abs(expert["normalised_score"] - 1.0) < 4 * expert["normalised_score_se"]
