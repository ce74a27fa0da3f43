"""`serve` refuses a bad tuning setting with one line and exit 2, before it starts any worker."""

from __future__ import annotations

import os

import pytest

from tests.harness import COLLECTOR, Collector, free_port, run


@pytest.mark.parametrize("value", ["abc", "0", "-4", "1000"])
def test_a_bad_database_thread_count_is_refused_in_one_line(tmp_path, value):
    collector = Collector(tmp_path / "collector").init()
    proc = run([COLLECTOR, "--data", str(collector.data), "serve", "--listen", f"127.0.0.1:{free_port()}",
                "--workers", "2"], check=False, timeout=60, env={**os.environ, "WARDWATCH_DB_THREADS": value})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "WARDWATCH_DB_THREADS must be a whole number from 1 to 256" in lines[0]
    assert not (collector.data / "run" / "endpoints.json").exists()  # nothing was started


@pytest.mark.parametrize("value", ["0", "x", "65"])
def test_a_bad_accept_loop_count_is_refused_in_one_line(tmp_path, value):
    collector = Collector(tmp_path / "collector").init()
    proc = run([COLLECTOR, "--data", str(collector.data), "serve", "--listen", f"127.0.0.1:{free_port()}"],
               check=False, timeout=60, env={**os.environ, "WARDWATCH_ACCEPT_LOOPS": value})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "WARDWATCH_ACCEPT_LOOPS must be a whole number from 1 to 64" in lines[0]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_collector_on_a_port_in_use_is_refused_in_one_line(tmp_path, workers):
    """The servers share their port with SO_REUSEPORT, which the kernel would also grant a second collector
    started by mistake on the same port: it would quietly take half the fleet's connections."""
    first = Collector(tmp_path / "first").init().start()
    try:
        second = Collector(tmp_path / "second").init()
        proc = run([COLLECTOR, "--data", str(second.data), "serve", "--listen", f"127.0.0.1:{first.port}",
                    "--enrol-listen", f"127.0.0.1:{free_port()}", "--web", f"127.0.0.1:{free_port()}",
                    "--workers", str(workers)], check=False, timeout=60)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert f"cannot listen on 127.0.0.1:{first.port} for --listen" in lines[0]
        assert "another collector" in lines[0]
        assert first.proc.poll() is None  # the first one keeps serving
    finally:
        first.stop()


def test_a_stop_is_clean_with_no_traceback_in_the_log(tmp_path):
    """A technician reads the collector's log after every restart: an ERROR traceback there at each stop (the
    console used to be cancelled mid-lifespan) hides the ones that matter."""
    collector = Collector(tmp_path / "collector").init().start()
    proc = collector.proc
    collector.stop()
    assert proc.returncode == 0
    log = collector.log.read_text()
    assert "stopping: finishing calls in flight" in log
    assert "Traceback" not in log and "ERROR" not in log
