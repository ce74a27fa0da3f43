"""`make demo`: a collector on SQLite, a local agent enrolled with a token, a test alert, and the console.

Everything lives in ./demo-data (made afresh each run). The collector and the agent keep running until Ctrl+C.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path.cwd() / "demo-data"
BIN = Path(sys.executable).parent


def _port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"demo: {' '.join(cmd[:3])} failed:\n{proc.stderr.strip()}")
    return proc.stdout


def main() -> int:
    if ROOT.exists():
        shutil.rmtree(ROOT)
    data, state = ROOT / "collector", ROOT / "agent"
    collector = [str(BIN / "wardwatch-collector"), "--data", str(data)]
    agent = [str(BIN / "wardwatch-agent"), "--state", str(state)]
    port = _port(50051)
    enrol_port = _port(port + 1)
    web_port = _port(8080)

    _run(*collector, "init", "--site", "Demo Academy")
    (ROOT / "logs").mkdir()
    with open(ROOT / "logs" / "collector.log", "ab") as log:
        serve = subprocess.Popen([*collector, "serve", "--listen", f"127.0.0.1:{port}",
                                  "--enrol-listen", f"127.0.0.1:{enrol_port}", "--web", f"127.0.0.1:{web_port}"],
                                 stdout=log, stderr=subprocess.STDOUT)
    endpoints = data / "run" / "endpoints.json"
    deadline = time.monotonic() + 30
    while not endpoints.exists():
        if serve.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"demo: the collector did not start; see {ROOT / 'logs' / 'collector.log'}")
        time.sleep(0.1)

    token = [line for line in _run(*collector, "token", "create", "--ttl", "1h", "--uses", "5", "--site",
                                   "Demo Academy").splitlines() if line and not line.startswith("#")][-1]
    print(_run(*agent, "enroll", token).strip())
    print(_run(*agent, "send-test-alert", "--category", "self-harm", "--severity", "4",
               "--text", "demo: a test alert from this PC").strip())
    with open(ROOT / "logs" / "agent.log", "ab") as log:
        service = subprocess.Popen([*agent, "run"], stdout=log, stderr=subprocess.STDOUT)

    extra = _seed_review(data, json.loads(endpoints.read_text()).get("web", ""))
    alerts = _run(*collector, "alerts", "list").strip()
    print()
    print("WardWatch demo is running.")
    print(f"  agents connect to     127.0.0.1:{port} (mutual TLS); enrolment on 127.0.0.1:{enrol_port}")
    web = json.loads(endpoints.read_text()).get("web")
    if web:
        print(f"  review console        {web}  (certificate from the demo's own CA: accept it in the browser)")
    extra = [line for line in extra if not line.lower().startswith("review console")]
    for line in extra:
        print(f"  {line}")
    print("  stored alerts:\n    " + "\n    ".join(alerts.splitlines()))
    print(f"  try it:               {' '.join(agent)} send-test-alert --category bullying --severity 3")
    print(f"                        {' '.join(collector)} alerts list --json")
    print(f"  logs                  {ROOT / 'logs'}")
    print("Press Ctrl+C to stop.")
    try:
        serve.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for proc in (service, serve):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)
    return 0


def _seed_review(data: Path, console_url: str) -> list[str]:
    """Accounts and sample alerts for the review console, when the console is part of this build."""
    try:
        from collector.demo_review import seed_review_demo
    except ImportError:
        return []
    from collector.config import load_config
    from collector.store.db import make_engine

    cfg = load_config(data)
    engine = make_engine(cfg.db_url)
    try:
        return seed_review_demo(cfg, engine, console_url)
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
