import pytest

from tests.harness import Agent, Collector


def fleet_collector(data, **settings) -> Collector:
    """A real collector whose [fleet] settings are short enough for a test to watch them act."""
    c = Collector(data).init()
    with open(c.data / "config.toml", "a") as config:
        config.write("\n[fleet]\n" + "".join(f"{key} = {value!r}\n".replace("'", '"')
                                            for key, value in settings.items()))
    return c.start()


@pytest.fixture
def collector(tmp_path):
    c = fleet_collector(tmp_path / "collector", heartbeat_interval_s=1)
    yield c
    c.stop()


@pytest.fixture
def agents():
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.stop()
