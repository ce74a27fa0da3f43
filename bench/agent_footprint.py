#!/usr/bin/env python3
"""Footprint of the agent on a desktop (not a test: it prints figures).

Starts Xvfb + openbox, a collector, the agent service (`wardwatch-agent run`) and the session helper
(`wardwatch-agent session`) as real processes, then measures, for the service and the helper: RSS (peak, sampled
every second) and CPU as % of one core, first idle (nobody typing), then while xdotool types ordinary text into an
xterm at --rate keys/s for --seconds. Budget (issue 4): service + helper together under 80 MB RSS, under 1 % CPU
while typing and under 0.1 % idle. The last line is one JSON object.

usage: .venv/bin/python bench/agent_footprint.py [--seconds 60] [--idle 30] [--rate 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import AGENT, Agent, Collector, start_xvfb, wait_for

BUDGET = {"rss_mb": 80.0, "cpu_typing_pct": 1.0, "cpu_idle_pct": 0.1}
SENTENCES = [
    "the homework for english is an essay about the poem we read on monday",
    "remember to bring your pe kit and a water bottle tomorrow",
    "in science we measured the temperature of the water every minute",
    "my favourite book this term is about a girl who sails around the world",
    "the trip to the museum was great and we saw a real dinosaur skeleton",
    "can you send me the notes from the history lesson please",
]


class Sampler:
    """Peak RSS of some processes, sampled once a second on a thread."""

    def __init__(self, procs: dict[str, psutil.Process]):
        self.procs = procs
        self.peak = dict.fromkeys(procs, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(1.0)

    def sample(self) -> None:
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                self.peak[name] = max(self.peak[name], proc.memory_info().rss)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU time of the process and its threads (children are not ours: the helper spawns none)."""
    times = proc.cpu_times()
    return times.user + times.system


def measure_cpu(procs: dict[str, psutil.Process], action) -> dict[str, float]:
    """CPU % of one core used by each process while `action()` runs."""
    before = {name: cpu_seconds(p) for name, p in procs.items()}
    start = time.monotonic()
    action()
    wall = time.monotonic() - start
    return {name: 100.0 * (cpu_seconds(p) - before[name]) / wall for name, p in procs.items()}


def typing_text(keys: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    out = ""
    while len(out) < keys:
        out += rng.choice(SENTENCES) + ". "
    return out[:keys]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="typing time (default 60)")
    ap.add_argument("--idle", type=float, default=30.0, help="idle measurement time (default 30)")
    ap.add_argument("--rate", type=float, default=10.0, help="keys per second (default 10)")
    args = ap.parse_args()
    for tool in ("Xvfb", "openbox", "xdotool", "xterm"):
        if shutil.which(tool) is None:
            print(f"agent_footprint: missing {tool}", file=sys.stderr)
            return 2

    tmp = Path(tempfile.mkdtemp(prefix="ww-footprint-"))
    env = dict(os.environ)
    xvfb, display = start_xvfb()
    env["DISPLAY"] = display
    for var in ("WAYLAND_DISPLAY", "XDG_SESSION_TYPE"):
        env.pop(var, None)
    others: list[subprocess.Popen] = [xvfb]
    collector = Collector(tmp / "collector")
    agent = Agent(tmp / "agent")
    helper = None
    try:
        wait_for(lambda: subprocess.run(["xdotool", "getmouselocation"], env=env, capture_output=True).returncode == 0,
                 30, "Xvfb")
        others.append(subprocess.Popen(["openbox"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(lambda: "_NET_SUPPORTING_WM_CHECK" in subprocess.run(["xprop", "-root"], env=env, capture_output=True,
                                                                      text=True).stdout, 30, "openbox")
        xterm = subprocess.Popen(["xterm", "-T", "Year 8 Homework", "-e", "sh", "-c", "cat >/dev/null"], env=env)
        others.append(xterm)
        wid = wait_for(lambda: subprocess.run(["xdotool", "search", "--pid", str(xterm.pid)], env=env,
                                              capture_output=True, text=True).stdout.split(), 30, "the xterm")[-1]
        subprocess.run(["xdotool", "windowactivate", "--sync", wid], env=env, check=True)

        collector.init().start()
        # Agents run a signed bundle in production, and the helper verifies it before use: measure that path, not
        # only the built-in libraries an agent falls back to before its first bundle arrives.
        collector.cli("bundle", "publish")
        agent.enroll(collector.token()).start()
        wait_for(lambda: (agent.state / "ipc" / "session.sock").exists(), 60, "the agent service")
        wait_for(lambda: (agent.state / "bundle" / "current.wwb").exists(), 120, "the keyword bundle")
        session_log = tmp / "session.log"
        with open(session_log, "wb") as log:
            helper = subprocess.Popen([AGENT, "--state", str(agent.state), "session"], env=env, stdout=log,
                                      stderr=subprocess.STDOUT)
        wait_for(lambda: b"capturing:" in session_log.read_bytes(), 60, "the session helper")
        if b"keyword bundle" not in session_log.read_bytes():
            print("agent_footprint: the helper did not load the signed bundle", file=sys.stderr)
            return 1
        procs = {"service": psutil.Process(agent.proc.pid), "helper": psutil.Process(helper.pid)}
        time.sleep(3)  # let start-up work (imports, first heartbeat) finish before measuring idle

        print(f"idle for {args.idle:.0f} s ...", flush=True)
        with Sampler(procs) as idle_rss:
            idle_cpu = measure_cpu(procs, lambda: time.sleep(args.idle))
        keys = int(args.seconds * args.rate)
        print(f"typing {keys} keys at {args.rate:g} keys/s ...", flush=True)
        text = typing_text(keys)
        # xdotool's --delay is not the time per key: `--delay 100` types ~19.4 keys/s here and `--delay 200` ~9.8, so
        # this bench used to type at twice the rate it claimed. Ask for twice the interval, and measure the rate.
        delay_ms = str(round(2000 / args.rate))
        with Sampler(procs) as typing_rss:
            started = time.monotonic()
            typing_cpu = measure_cpu(procs, lambda: subprocess.run(
                ["xdotool", "type", "--delay", delay_ms, text], env=env, check=True))
            typed_rate = keys / (time.monotonic() - started)
        print(f"typed {keys} keys at {typed_rate:.1f} keys/s", flush=True)

        figures = {}
        for name in procs:
            rss = max(idle_rss.peak[name], typing_rss.peak[name]) / 2**20
            figures[name] = {"rss_mb": round(rss, 1), "cpu_idle_pct": round(idle_cpu[name], 3),
                             "cpu_typing_pct": round(typing_cpu[name], 3)}
            print(f"{name:8s} RSS {rss:6.1f} MB   CPU idle {idle_cpu[name]:6.3f} %   "
                  f"typing {typing_cpu[name]:6.3f} % of one core")
        total = {key: round(sum(f[key] for f in figures.values()), 3) for key in BUDGET}
        within = {key: total[key] < limit for key, limit in BUDGET.items()}
        print(f"together RSS {total['rss_mb']:.1f} MB (budget {BUDGET['rss_mb']:g}), CPU idle "
              f"{total['cpu_idle_pct']:.3f} % (budget {BUDGET['cpu_idle_pct']:g}), typing "
              f"{total['cpu_typing_pct']:.3f} % (budget {BUDGET['cpu_typing_pct']:g})")
        print(json.dumps({"bench": "agent_footprint", "keys": keys, "rate": args.rate,
                          "typed_rate": round(typed_rate, 2), "idle_s": args.idle,
                          **figures, "total": total, "budget": BUDGET, "within_budget": within}))
        return 0
    finally:
        if helper is not None and helper.poll() is None:
            helper.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                helper.wait(20)
        with contextlib.suppress(Exception):
            agent.stop()
        with contextlib.suppress(Exception):
            collector.stop()
        for proc in reversed(others):
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
