"""`serve --workers N` keeps a warm standby that takes a dead worker's place, so the fleet is not left on the
survivors (the agents of a dead worker reconnect within a quarter of a second, before a cold worker could bind)."""

import json
import socket
import ssl
import subprocess
import sys

import httpx
import psutil
import pytest

from collector.serve import _wait_for_an_exit
from tests.fleet.conftest import fleet_collector
from tests.harness import Agent, Collector, queue_alerts, stored_seqs, wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def fleet(tmp_path, pg_url):
    collector = Collector(tmp_path / "collector", pg_url).init().start(workers=2)
    supervisor = psutil.Process(collector.proc.pid)
    try:
        yield collector, supervisor
    finally:
        collector.stop()


def _listens(proc: psutil.Process, port: int) -> bool:
    try:
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in proc.net_connections("tcp"))
    except psutil.NoSuchProcess:
        return False


def _serving(collector: Collector, supervisor: psutil.Process) -> list[psutil.Process]:
    return [p for p in supervisor.children() if _listens(p, collector.port)]


def _spare(collector: Collector, supervisor: psutil.Process) -> psutil.Process | None:
    for proc in supervisor.children():
        try:
            if "--standby" in proc.cmdline() and not _listens(proc, collector.port):
                return proc
        except psutil.NoSuchProcess:
            continue
    return None


def test_the_standby_serves_in_place_of_a_killed_worker_and_nothing_is_lost(tmp_path, fleet):
    collector, supervisor = fleet
    wait_for(lambda: len(_serving(collector, supervisor)) == 2, 30, "two serving workers")
    standby = wait_for(lambda: _spare(collector, supervisor), 30, "the standby")
    # A standby holds no socket on the agents' port: the kernel would hand it connections it does not serve.
    assert not _listens(standby, collector.port)
    agent = Agent(tmp_path / "agent").enroll(collector.token())
    agent_id = agent.config()["agent_id"]
    seqs = queue_alerts(agent.state, 1500)
    agent.start()
    try:
        wait_for(lambda: len(stored_seqs(collector, agent_id)) > 0, 60, "the first batch")
        victim = next(p for p in _serving(collector, supervisor)
                      if any(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == collector.port
                             for c in p.net_connections(kind="tcp")))
        survivor = next(p for p in _serving(collector, supervisor) if p.pid != victim.pid)
        victim.kill()
        wait_for(lambda: _listens(standby, collector.port), 30, "the standby to take the port")
        # The standby took the place: no worker was started from cold beside it.
        assert {p.pid for p in _serving(collector, supervisor)} == {survivor.pid, standby.pid}
        assert not [p for p in supervisor.children() if p.pid not in (survivor.pid, standby.pid)
                    and "--worker-index" in p.cmdline()]
        wait_for(lambda: len(stored_seqs(collector, agent_id)) == 1500, 180, "the whole backlog")
        assert stored_seqs(collector, agent_id) == seqs
    finally:
        agent.stop()
    assert "standby taking the place of worker" in collector.log.read_text()


def test_the_console_moves_to_the_standby_when_its_worker_dies(fleet):
    collector, supervisor = fleet
    standby = wait_for(lambda: _spare(collector, supervisor), 30, "the standby")
    endpoints = collector.data / "run" / "endpoints.json"
    console_worker = next(p for p in supervisor.children() if p.cmdline()[-2:] == ["--worker-index", "0"])
    assert json.loads(endpoints.read_text())["pid"] == console_worker.pid
    console_worker.kill()

    def published_by_standby() -> bool:
        try:
            published = json.loads(endpoints.read_text())
        except (OSError, ValueError):
            return False
        return published["pid"] == standby.pid and bool(published["web"])

    wait_for(published_by_standby, 30, "the standby to publish the console")
    ca = ssl.create_default_context(cafile=str(collector.data / "pki" / "ca.crt"))
    page = httpx.get(f"https://127.0.0.1:{collector.web_port}/login", verify=ca, timeout=30)
    assert page.status_code == 200 and "<form" in page.text


def test_workers_and_standby_leave_when_the_supervisor_is_gone(fleet):
    """An orphaned worker would go on serving the agents' port, and a collector started in the supervisor's place
    would refuse that port as in use."""
    collector, supervisor = fleet
    wait_for(lambda: len(_serving(collector, supervisor)) == 2, 30, "two serving workers")
    standby = wait_for(lambda: _spare(collector, supervisor), 30, "the standby")
    children = supervisor.children()
    assert standby.pid in [c.pid for c in children] and len(children) == 3
    supervisor.kill()  # no SIGTERM handler runs: the kernel must tell the workers
    collector.proc.wait(timeout=30)
    _gone, alive = psutil.wait_procs(children, timeout=30)
    for proc in alive:  # do not leave them behind if the test fails
        proc.kill()
    assert alive == []


def test_the_supervisor_wakes_when_a_worker_exits_not_at_its_timeout():
    quick = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    lasting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        # An hour's timeout: if the exit did not wake it, pytest's own timeout fails the test long before.
        _wait_for_an_exit([lasting, quick], timeout=3600)
        assert quick.poll() is not None
        assert lasting.poll() is None
    finally:
        lasting.kill()
        lasting.wait()
        quick.wait()


def _accepted_by(proc: psutil.Process, port: int, clients: set[int]) -> int:
    """How many of the connections from local ports `clients` to `port` this process has accepted."""
    return sum(1 for c in proc.net_connections("tcp")
               if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port and c.raddr and c.raddr.port in clients)


def _where_new_connections_go(port: int, workers: list[psutil.Process], count: int = 24) -> list[int]:
    """Open `count` connections to `port`, wait until the workers have accepted them all, and say how many each
    worker accepted."""
    opened = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    try:
        clients = {s.getsockname()[1] for s in opened}
        wait_for(lambda: sum(_accepted_by(w, port, clients) for w in workers) == count, 30,
                 "the connections accepted")
        return [_accepted_by(w, port, clients) for w in workers]
    finally:
        for s in opened:
            s.close()


def test_the_replacement_takes_new_connections_until_the_dead_workers_agents_are_back(tmp_path, pg_url):
    """Hashed over every worker, the dead worker's reconnecting agents would land on the survivor half the time,
    leaving it three quarters of the fleet. The replacement takes every new connection for two heartbeat
    intervals, then the kernel hashes them over all workers again."""
    collector = fleet_collector(tmp_path / "collector", pg_url, workers=2, heartbeat_interval_s=4)
    supervisor = psutil.Process(collector.proc.pid)
    try:
        wait_for(lambda: len(_serving(collector, supervisor)) == 2, 30, "two serving workers")
        standby = wait_for(lambda: _spare(collector, supervisor), 30, "the standby")
        victim = _serving(collector, supervisor)[0]
        survivor = _serving(collector, supervisor)[1]
        victim.kill()
        wait_for(lambda: "taking the port's new connections" in collector.log.read_text(), 30, "the steering")
        assert _where_new_connections_go(collector.port, [standby, survivor]) == [24, 0]
        wait_for(lambda: "spread over every worker again" in collector.log.read_text(), 60, "the end of steering")
        # Hashed: each worker gets some (all 24 on one has a chance of 2 in 16 million).
        to_standby, to_survivor = _where_new_connections_go(collector.port, [standby, survivor])
        assert to_standby > 0 and to_survivor > 0
    finally:
        collector.stop()


def test_a_worker_restarted_from_cold_also_takes_the_dead_workers_agents(fleet):
    """With no standby at hand (it died, and its successor is not due for 30 s), the supervisor starts a worker
    from cold, and that worker steers the reconnecting agents to itself as the standby would."""
    collector, supervisor = fleet
    wait_for(lambda: len(_serving(collector, supervisor)) == 2, 30, "two serving workers")
    standby = wait_for(lambda: _spare(collector, supervisor), 30, "the standby")
    standby.kill()
    wait_for(lambda: "the standby worker exited" in collector.log.read_text(), 30, "the supervisor to see it")
    victim = _serving(collector, supervisor)[0]
    victim.kill()
    wait_for(lambda: "taking the port's new connections" in collector.log.read_text(), 60, "the steering")
    cold = [p for p in supervisor.children() if "--replacing" in p.cmdline()]
    assert len(cold) == 1 and cold[0].pid != victim.pid
    assert "standby taking the place" not in collector.log.read_text()
