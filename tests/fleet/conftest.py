import pytest

from tests.harness import Agent, Collector


def fleet_collector(data, db_url: str | None = None, workers: int = 1, **settings) -> Collector:
    """A real collector whose [fleet] settings are short enough for a test to watch them act."""
    c = Collector(data, db_url).init()
    with open(c.data / "config.toml", "a") as config:
        config.write("\n[fleet]\n" + "".join(f"{key} = {value!r}\n".replace("'", '"')
                                            for key, value in settings.items()))
    return c.start(workers=workers)


@pytest.fixture
def collector(tmp_path):
    c = fleet_collector(tmp_path / "collector", heartbeat_interval_s=1)
    yield c
    c.stop()


@pytest.fixture
def any_store_collector(tmp_path, db_url):
    """The collector on SQLite and on PostgreSQL: for behaviour that leans on row locks and JSON columns."""
    c = fleet_collector(tmp_path / "collector", db_url if db_url.startswith("postgresql") else None,
                        heartbeat_interval_s=1)
    yield c
    c.stop()


@pytest.fixture
def agents():
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.stop()
