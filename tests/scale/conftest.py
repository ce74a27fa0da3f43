import pytest

from tests.conftest import _fresh_pg_schema


@pytest.fixture
def pg_url():
    """A fresh schema on the local PostgreSQL, shared by the replicas a test starts."""
    yield from _fresh_pg_schema()
