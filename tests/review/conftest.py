import pytest

from tests.review.world import build_world


@pytest.fixture
def world(store_engine, tmp_path):
    return build_world(store_engine, tmp_path / "data")
