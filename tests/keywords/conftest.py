import pytest

from collector.config import CollectorConfig
from collector.pki import PkiPaths, create_pki
from collector.web.app import create_app
from tests.web.conftest import as_user, world  # noqa: F401  (the web tests' invented school and sign-in)


@pytest.fixture
def app(world, db_url, tmp_path):  # noqa: F811
    cfg = CollectorConfig(data_dir=tmp_path / "data", db_url=db_url)
    create_pki(PkiPaths(cfg.pki_dir), ["127.0.0.1"])  # publishing signs with the collector's bundle key
    return create_app(cfg, world.engine)
