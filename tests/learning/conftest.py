"""The learning tier's shared π_SFT: the SFT preset (300 steps on the default demonstrations,
seed 0) trained once per session and reused by the SFT, AfD and FRFT learning tests, which all
start from the same π_SFT (their presets' SFT settings are the SFT preset's)."""

from __future__ import annotations

import pytest

from irlalign.demo.plan import preset_config
from irlalign.methods import resolve, train


@pytest.fixture(scope="session")
def sft_run(default_task_dir, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("learning_sft")
    method_name, raw = preset_config(
        "sft",
        task_dir=default_task_dir,
        runs_root=out,
        output_dir=out / "sft",
        seed=0,
        overrides={"training": {"save_steps": 10**6}},
    )
    return train(resolve(method_name, raw))
