"""Shared test fixtures: the reference data folder and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BENTHICNET_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_file(*parts: str) -> Path:
    """Path of a file under ``../shared/data``; skips the test when the folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (shared data folder not present beside the clone)")
    return path


@pytest.fixture(scope="session")
def catami_csv() -> Path:
    return shared_file("catami", "catami_ex.csv")


@pytest.fixture(scope="session")
def hmc_dir() -> Path:
    return shared_file("hmc")


@pytest.fixture
def one_torch_thread():
    """Tiny tensors on a shared 2-core machine: extra intra-op threads only add contention. Modules
    opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
