"""The Linux installer, run for real into a temporary prefix and root: install, enrol, alert, upgrade, uninstall.

systemd is not PID 1 here, so units are checked with `systemd-analyze verify` and the agent service is run
straight from the installed virtual environment, as its unit's ExecStart would.
"""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import Collector, queue_alerts, wait_for

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "installer" / "linux" / "install.sh"
CODE = "staff-room-kettle-42"


class Installed:
    """One PC's installation: prefix, state and unit root all under a temporary directory."""

    def __init__(self, base: Path):
        self.prefix, self.state, self.root = base / "opt" / "wardwatch", base / "var" / "agent", base / "root"
        self.agent = self.prefix / "venv" / "bin" / "wardwatch-agent"
        self.proc: subprocess.Popen | None = None
        self.log = base / "agent-run.log"

    def install(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(INSTALL), *args, "--prefix", str(self.prefix), "--state", str(self.state), "--root",
               str(self.root), "--source", str(REPO), "--python", sys.executable]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if check and proc.returncode != 0:
            raise AssertionError(f"install.sh {args[:1]} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.agent), "--state", str(self.state), *args], capture_output=True, text=True,
                              timeout=60, check=True)

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(self.agent), "--state", str(self.state), "run"], stdout=log,
                                         stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None

    def agent_id(self) -> str:
        return json.loads((self.state / "agent.json").read_text())["agent_id"]


@pytest.fixture
def collector(tmp_path):
    c = Collector(tmp_path / "collector").init()
    with open(c.data / "config.toml", "a") as config:
        config.write("\n[fleet]\nheartbeat_interval_s = 2\n")
    c.start()
    yield c
    c.stop()


def _verify_unit(path: Path, *extra: str) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (see .ci/run)")
    proc = subprocess.run(["systemd-analyze", *extra, "verify", str(path)], capture_output=True, text=True,
                          timeout=60)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if path.name in line or "Unknown" in line or "Invalid" in line]
    assert proc.returncode == 0 and not problems, proc.stdout + proc.stderr


def _kinds(collector: Collector, agent_id: str) -> list[tuple[str, str]]:
    return [(a["kind"], a["rule"]) for a in collector.alerts() if a["agent_id"] == agent_id]


def test_install_enrol_alert_upgrade_uninstall(tmp_path, collector):
    pc = Installed(tmp_path / "pc")
    collector.cli("uninstall-code", "set", "--code", CODE)

    out = pc.install(collector.token()).stdout
    assert "WardWatch agent installed" in out and pc.agent_id() in out
    system_unit = pc.root / "etc/systemd/system/wardwatch-agent.service"
    user_unit = pc.root / "etc/systemd/user/wardwatch-session.service"
    unit = system_unit.read_text()
    assert f"ExecStart={pc.agent} --state {pc.state} run" in unit
    for hardening in ("ProtectSystem=strict", f"ReadWritePaths={pc.state}", "NoNewPrivileges=yes",
                      "PrivateTmp=yes", "ProtectHome=read-only"):
        assert hardening in unit
    _verify_unit(system_unit)
    _verify_unit(user_unit)
    assert "Exec=" in (pc.root / "etc/xdg/autostart/wardwatch-session.desktop").read_text()
    # The classroom PC gets the agent extra only: no web framework, no database driver.
    site = next((pc.prefix / "venv" / "lib").glob("python3*/site-packages"))
    assert not list(site.glob("sqlalchemy*")) and not list(site.glob("fastapi*"))

    agent_id = pc.agent_id()
    pc.start()
    pc.cli("send-test-alert", "--category", "self-harm", "--severity", "4", "--text", "installer check")
    assert ("test", "test.manual") in _kinds(collector, agent_id)

    # Upgrade: the installer marks the stop as maintenance; identity and unsent alerts survive it.
    pc.install("--upgrade")
    pc.stop()
    queue_alerts(pc.state, 3, text="spooled across the upgrade")
    pc.start()
    assert pc.agent_id() == agent_id
    wait_for(lambda: sum(1 for a in collector.alerts() if a["matched"] == "spooled across the upgrade") == 3,
             60, "the alerts spooled before the upgrade")

    # A stop outside an upgrade is a coverage gap the technician hears about.
    pc.stop()
    wait_for(lambda: ("coverage", "coverage.service-stopped") in _kinds(collector, agent_id), 30,
             "the service-stopped coverage alert")
    assert sum(1 for kind in _kinds(collector, agent_id) if kind == ("coverage", "coverage.service-stopped")) == 1

    refused = pc.install("--uninstall", check=False)
    assert refused.returncode == 2 and "needs the uninstall code" in refused.stderr
    wrong = pc.install("--uninstall", "--code", "guessed-by-a-pupil", check=False)
    assert wrong.returncode == 2 and "wrong uninstall code" in wrong.stderr and "Traceback" not in wrong.stderr
    assert pc.agent.exists() and (pc.state / "identity.key").exists() and system_unit.exists()

    removed = pc.install("--uninstall", "--code", CODE)
    assert "removed" in removed.stdout
    assert not pc.prefix.exists() and not pc.state.exists() and not system_unit.exists() and not user_unit.exists()
    [row] = [json.loads(line) for line in collector.cli("agents", "list", "--json").stdout.splitlines()]
    assert (row["id"], row["status"]) == (agent_id, "removed")


def test_installer_errors_are_one_clear_line(tmp_path):
    pc = Installed(tmp_path / "pc")
    for args, needle in (([], "give the enrolment string"), (["--upgrade"], "nothing to upgrade"),
                         (["--uninstall", "--code", CODE], "no WardWatch installation"),
                         (["x", "--bogus"], "unknown option --bogus")):
        proc = pc.install(*args, check=False)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
