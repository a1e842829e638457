"""Shared fixtures. Tests run offline, on CPU, with the benchmark cache inside the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("IRLALIGN_CACHE", str(ROOT / ".cache" / "irlalign"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: one torch thread each (the tiny models gain nothing
    # from intra-op threads, and two workers with two threads each would oversubscribe).
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


DATA = {
    "sft": "demos",
    "iqlearn": "demos",
    "reward": "preferences",
    "dpo": "preferences",
    "ava": "preferences",
    "preference_transformer": "preferences",
}


def raw_config(task_dir, out, method, **training):
    return {
        "model": {"path": str(task_dir / "pi_init")},
        "data": {"train": str(task_dir / DATA[method]), "max_length": 32},
        "training": {
            "output_dir": str(out),
            "max_steps": 3,
            "per_device_train_batch_size": 4,
            "learning_rate": 1e-2,
            "logging_steps": 1,
            "save_steps": 2,
            "seed": 0,
            "use_cpu": True,
            "disable_tqdm": True,
            **training,
        },
    }


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def default_task():
    from irlalign.synthetic.config import SyntheticConfig
    from irlalign.synthetic.language import build_task

    return build_task(SyntheticConfig())


@pytest.fixture(scope="session")
def smoke_config():
    from irlalign.synthetic.config import SyntheticConfig

    return SyntheticConfig.from_file(ROOT / "configs" / "synthetic" / "smoke.yaml")


@pytest.fixture(scope="session")
def smoke_task_dir(tmp_path_factory, smoke_config) -> Path:
    from irlalign.synthetic.build import build

    out = tmp_path_factory.mktemp("smoke_task")
    build(out, smoke_config)
    return out


@pytest.fixture(scope="session")
def default_task_dir(tmp_path_factory) -> Path:
    """The default benchmark; π_init is pretrained once per cache (about 1.5 min on 2 cores)."""
    from irlalign.synthetic.build import build
    from irlalign.synthetic.config import SyntheticConfig

    out = tmp_path_factory.mktemp("default_task")
    build(out, SyntheticConfig())
    return out


# The learning tier's shared π_SFT: the SFT preset (300 steps on the default demonstrations,
# seed 0) trained once per session and reused by the SFT, AfD and FRFT learning tests, which all
# start from the same π_SFT (their presets' SFT settings are the SFT preset's).
@pytest.fixture(scope="session")
def sft_run(default_task_dir, tmp_path_factory) -> dict:
    from irlalign.demo.plan import preset_config
    from irlalign.methods import resolve, train

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
