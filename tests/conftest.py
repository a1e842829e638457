"""Shared fixtures. Tests run offline, on CPU, with the benchmark cache inside the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("IRLALIGN_CACHE", str(ROOT / ".cache" / "irlalign"))


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
