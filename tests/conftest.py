"""One session-scoped SparkSession for the whole suite (local[2], 2 shuffle partitions, UTC)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RXCOHORT_ENV", "test")
os.environ.setdefault("TZ", "UTC")
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def spark():
    from rxcohort.spark import build_session

    session = build_session()
    yield session
    session.stop()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
