"""Shared fixtures. Real data lives in ../shared/data and is optional."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Engines started by the tests (in-process, local, ssh, Slurm) serve the debug.* methods; a test
# that checks they are refused otherwise removes the variable for its own engine.
os.environ.setdefault("LLMH_ENGINE_TEST_METHODS", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real DICOM and real studies); skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not present at {SHARED_DATA}")
    return SHARED_DATA
