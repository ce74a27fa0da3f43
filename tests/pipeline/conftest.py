import pytest

from tests.harness import Agent, Collector


@pytest.fixture
def collector(tmp_path, db_url):
    c = Collector(tmp_path / "collector", db_url if db_url.startswith("postgresql") else None).init().start()
    yield c
    c.stop()


@pytest.fixture
def enrolled(tmp_path, collector):
    agent = Agent(tmp_path / "agent").enroll(collector.token())
    yield agent
    agent.stop()
