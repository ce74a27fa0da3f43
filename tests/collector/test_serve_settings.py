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
