"""Outages and crashes with real processes: after recovery every alert arrives exactly once."""

import contextlib
import json
import shutil
import signal
import subprocess

import pytest

from tests.harness import Agent, queue_alerts, stored_seqs, wait_for

BACKLOG = 1500


def _spool_empty(agent: Agent) -> bool:
    return json.loads(agent.cli("status", "--json").stdout)["spool_depth"] == 0


def test_alerts_spooled_while_the_collector_is_down_arrive_once(collector, enrolled):
    agent_id = enrolled.config()["agent_id"]
    collector.stop()
    enrolled.start()
    seqs = queue_alerts(enrolled.state, 50)
    # The running agent retries against a dead collector, backing off, for a while.
    wait_for(lambda: "cannot reach the collector" in enrolled.log.read_text(), 30, "the agent to notice the outage")
    collector.start()
    wait_for(lambda: len(stored_seqs(collector, agent_id)) >= len(seqs), 120, "the backlog to arrive")
    wait_for(lambda: _spool_empty(enrolled), 30, "the spool to empty")
    assert stored_seqs(collector, agent_id) == seqs


@pytest.mark.parametrize("victim", ["collector", "agent"])
def test_process_killed_mid_batch_loses_and_doubles_nothing(collector, enrolled, victim):
    """SIGKILL the collector (mid-commit) or the agent (mid-send) while a backlog drains, then restart it."""
    agent_id = enrolled.config()["agent_id"]
    seqs = queue_alerts(enrolled.state, BACKLOG)
    enrolled.start()
    wait_for(lambda: len(stored_seqs(collector, agent_id)) > 0, 60, "the first batch to be stored")
    process = collector if victim == "collector" else enrolled
    process.stop(signal.SIGKILL)
    assert len(stored_seqs(collector, agent_id)) < BACKLOG, "backlog drained before the kill; make it larger"
    process.start()
    wait_for(lambda: len(stored_seqs(collector, agent_id)) == BACKLOG, 180, "the whole backlog")
    wait_for(lambda: _spool_empty(enrolled), 30, "the spool to empty")
    assert stored_seqs(collector, agent_id) == seqs


@contextlib.contextmanager
def _small_filesystem(path, size="1m"):
    path.mkdir(parents=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_spool_disk_loses_nothing_it_accepted(tmp_path, collector):
    from agent.spool import Spool, SpoolFull
    from agent.state import AgentState

    with _small_filesystem(tmp_path / "small") as small:
        agent = Agent(small / "state").enroll(collector.token())
        agent_id = agent.config()["agent_id"]
        collector.stop()
        # Fill the disk so only a little room is left, then queue until SQLite says the disk is full.
        filler = small / "filler"
        free = shutil.disk_usage(small).free
        filler.write_bytes(b"\0" * max(0, free - 160 * 1024))
        accepted, refused = [], 0
        for _ in range(2000):
            try:
                accepted += queue_alerts(agent.state, 1, severity=4, text="p" * 400)
            except SpoolFull:
                refused += 1
                break
        assert refused == 1 and accepted, "the disk never filled"
        spool = Spool(AgentState(agent.state).spool_path)
        assert spool.pending_seqs() == accepted  # nothing half-written, no seq consumed by the failure
        spool.close()
        filler.unlink()  # the technician frees space
        collector.start()
        agent.start()
        try:
            wait_for(lambda: len(stored_seqs(collector, agent_id)) == len(accepted), 120, "the spooled alerts")
            wait_for(lambda: _spool_empty(agent), 30, "the spool to empty")
        finally:
            agent.stop()
        assert stored_seqs(collector, agent_id) == accepted
