"""Engines over the small fixture library in tests/detect/fixtures/library (invented test phrases)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.detect import Engine

FIXTURE_LIBRARY = Path(__file__).parent / "fixtures" / "library"


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine.from_signatures(FIXTURE_LIBRARY, profile="secondary")


@pytest.fixture
def library_copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture library, for tests that break or change a file."""
    target = tmp_path / "library"
    shutil.copytree(FIXTURE_LIBRARY, target)
    return target


def rules(matches) -> list[str]:
    return sorted(m.rule for m in matches)
