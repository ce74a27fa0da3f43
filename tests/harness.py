"""Real processes for end-to-end tests: a collector (init + serve) and agents, driven through their CLIs."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
COLLECTOR = str(BIN / "wardwatch-collector")
AGENT = str(BIN / "wardwatch-agent")
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PG_BASE = os.environ.get("WARDWATCH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def scratch_pg_schema(prefix: str = "ww_test") -> Iterator[str]:
    """A fresh schema on the local PostgreSQL server for one test or benchmark, dropped afterwards. Yields a
    database URL whose search_path is that schema, so the collector creates its tables there."""
    import psycopg

    schema = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_xvfb() -> tuple[subprocess.Popen, str]:
    """A new X server on a free display, for desktop tests and the footprint benchmark: (process, ":N")."""
    # Xvfb picks a free display itself (-displayfd): other test runs on this machine have their own servers.
    # -noreset: by default the server resets when its last client leaves, and a client connecting during that
    # reset (openbox, right after our readiness probe) is refused.
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-noreset", "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            pass_fds=(write_fd,))
    os.close(write_fd)
    with os.fdopen(read_fd) as announced:
        number = announced.readline().strip()
    if not number:
        xvfb.kill()
        raise RuntimeError("Xvfb did not start")
    return xvfb, f":{number}"


def wait_for(condition, timeout: float = 10.0, what: str = "condition", interval: float = 0.05):
    """Poll `condition` until it returns a truthy value or the deadline passes (then fail, naming `what`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def run(cmd: list[str], check: bool = True, timeout: float = 60, env: dict | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:4])}... exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


class Collector:
    def __init__(self, data: Path, db_url: str | None = None):
        self.data = data
        self.db_url = db_url
        self.port = free_port()
        self.enrol_port = free_port()
        self.web_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = data.parent / f"{data.name}-serve.log"

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        base = [COLLECTOR, "--data", str(self.data)] + (["--db", self.db_url] if self.db_url else [])
        return run(base + list(args), check=check, timeout=timeout)

    def init(self) -> Collector:
        self.cli("init")
        return self

    def start(self, workers: int = 1) -> Collector:
        endpoints = self.data / "run" / "endpoints.json"
        endpoints.unlink(missing_ok=True)
        cmd = [COLLECTOR, "--data", str(self.data)] + (["--db", self.db_url] if self.db_url else []) + [
            "serve", "--listen", f"127.0.0.1:{self.port}", "--enrol-listen", f"127.0.0.1:{self.enrol_port}",
            "--web", f"127.0.0.1:{self.web_port}", "--workers", str(workers)]
        with open(self.log, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        def published() -> bool:  # gRPC first, the console's address a moment later
            try:
                return bool(json.loads(endpoints.read_text()).get("web"))
            except (OSError, ValueError):
                return False

        wait_for(lambda: published() or self.proc.poll() is not None, 30, "the collector and its console")
        if self.proc.poll() is not None:
            raise AssertionError(f"collector exited {self.proc.returncode}:\n{self.log.read_text()[-2000:]}")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def token(self, uses: int = 1, ttl: str = "1h", site: str = "Test site", band: str = "secondary") -> str:
        out = self.cli("token", "create", "--ttl", ttl, "--uses", str(uses), "--site", site,
                       "--age-band", band).stdout
        return [line for line in out.splitlines() if line.strip() and not line.startswith("#")][-1]

    def alerts(self) -> list[dict]:
        out = self.cli("alerts", "list", "--json").stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


class Agent:
    def __init__(self, state: Path):
        self.state = state
        self.proc: subprocess.Popen | None = None
        self.log = state.parent / f"{state.name}-run.log"

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return run([AGENT, "--state", str(self.state), *args], check=check, timeout=timeout)

    def enroll(self, token: str) -> Agent:
        self.cli("enroll", token)
        return self

    def start(self, env: dict | None = None) -> Agent:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([AGENT, "--state", str(self.state), "run"], stdout=log,
                                         stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def config(self) -> dict:
        return json.loads((self.state / "agent.json").read_text())


def store_url(collector: Collector) -> str:
    return collector.db_url or f"sqlite:///{collector.data / 'wardwatch.db'}"


def stored_seqs(collector: Collector, agent_id: str, kind: str | None = "test") -> list[int]:
    """Stored seqs of one agent's alerts of one kind (default: those queue_alerts makes), straight from the
    database. The service adds alerts of its own (service-stopped, USB inventory), which tests must not count."""
    from sqlalchemy import create_engine, text

    engine = create_engine(store_url(collector))
    query = "SELECT seq FROM alerts WHERE agent_id = :a" + (" AND kind = :k" if kind else "") + " ORDER BY seq"
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text(query), {"a": agent_id, "k": kind})]
    finally:
        engine.dispose()


def agent_commands(collector: Collector, agent_id: str) -> list[dict]:
    """The commands queued for one agent, oldest first, with the agent's answer (ok, detail) once it gave one."""
    from sqlalchemy import create_engine, text

    engine = create_engine(store_url(collector))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, kind, payload, ok, detail FROM agent_commands WHERE agent_id = :a "
                                     "ORDER BY created_at"), {"a": agent_id}).mappings().all()
        return [dict(r) for r in rows]
    finally:
        engine.dispose()


def queue_alerts(state: Path, count: int, severity: int = 3, text: str = "queued by test") -> list[int]:
    """Sign and spool `count` alerts in an agent's state directory, as the service would (it must not run)."""
    from agent.alerts import Signer, make_test_alert
    from agent.spool import Spool
    from agent.state import AgentState

    st = AgentState(state)
    signer = Signer(key=st.identity_key(), agent_id=st.config()["agent_id"])
    spool = Spool(st.spool_path)
    try:
        alert = make_test_alert("bullying", severity, text)
        return [spool.enqueue(severity, lambda s: signer.envelope(alert, s)) for _ in range(count)]
    finally:
        spool.close()


class Inbox:
    """A real SMTP server's mailbox (aiosmtpd handler): every message with its recipients."""

    def __init__(self):
        import email.message

        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):
        import email
        import email.policy

        self.messages.append((list(envelope.rcpt_tos),
                              email.message_from_bytes(envelope.content, policy=email.policy.default)))
        return "250 OK"
