"""Ingest benchmark: N simulated agents with real keys and certificates upload signed alerts over mTLS.

The collector runs as its own process(es) (`wardwatch-collector serve [--workers N]`); the agents are real gRPC
clients in this process, each with its own Ed25519 identity and client certificate.

Two phases, both printed:
- capacity (a backlog drain): every agent has come back after an outage with a spool of alerts it signed while
  it was away. The alerts are signed BEFORE the clock starts (signing is the agents' work, not the collector's);
  each agent then uploads its spool one batch at a time, as the real uplink does, and the figure is alerts
  committed per second from the first upload to the last ack. It is compared with the raw Ed25519 verify rate of
  one core of this machine, measured in the same run: the ratio says whether the collector stores alerts as fast
  as one core could merely check their signatures.
- live: the same agents sign each alert when it is made, at a set total rate, and upload it at once; the figure
  is p50/p99 from signing to the ack (which the collector sends only after the commit).

Usage: bench/ingest.py [--agents 20] [--alerts 500] [--batch 100] [--db postgresql|sqlite|URL] [--workers 1]
[--live-rate 500 --live-s 10]. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.alerts import Signer, make_test_alert  # noqa: E402
from agent.channel import secure_channel  # noqa: E402
from agent.enrol import enroll  # noqa: E402
from agent.state import AgentState  # noqa: E402
from bench.common import bench_database, percentile, verify_rates_one_core  # noqa: E402
from protos import wardwatch_pb2 as pb  # noqa: E402
from protos import wardwatch_pb2_grpc as pb_grpc  # noqa: E402
from tests.harness import Collector, stored_seqs  # noqa: E402

TEXT = "benchmark alert text of a typical length"


def check_acks(resp: pb.UploadBatchResponse) -> None:
    bad = [a for a in resp.acks if a.status != pb.AlertAck.STATUS_STORED]
    if bad:
        raise SystemExit(f"unexpected ack: {bad[0]}")


async def drain(stubs: list, spools: list[list[pb.SignedAlert]], batch: int) -> list[float]:
    """Every agent uploads its pre-signed spool, one batch in flight per agent. Returns per-batch latencies."""
    latencies: list[float] = []

    async def one_agent(stub, spool: list[pb.SignedAlert]) -> None:
        for i in range(0, len(spool), batch):
            t0 = time.perf_counter()
            resp = await stub.UploadBatch(pb.UploadBatchRequest(alerts=spool[i:i + batch]), timeout=120)
            latencies.append(time.perf_counter() - t0)
            check_acks(resp)

    await asyncio.gather(*(one_agent(stub, spool) for stub, spool in zip(stubs, spools, strict=True)))
    return latencies


async def live(stubs: list, signers: list[Signer], first_seq: int, rate: float, seconds: float) -> list[float]:
    """Each agent signs an alert when it is due and uploads what it has; sign-to-ack latency of every alert."""
    latencies: list[float] = []
    rate_each = rate / len(stubs)
    alert = make_test_alert("bullying", 3, TEXT)

    async def one_agent(index: int, stub, signer: Signer) -> None:
        seq = first_seq
        start = time.monotonic() + index / rate  # spread the agents over the first interval
        end = start + seconds
        made = 0
        while True:
            now = time.monotonic()
            if now >= end:
                return
            due = start + made / rate_each
            if now < due:
                await asyncio.sleep(due - now)
            pending = []
            while time.monotonic() >= start + made / rate_each and time.monotonic() < end:
                env = pb.SignedAlert()
                env.ParseFromString(signer.envelope(alert, seq))  # signed now: latency starts here
                pending.append((time.perf_counter(), env))
                seq += 1
                made += 1
            if not pending:
                continue
            resp = await stub.UploadBatch(pb.UploadBatchRequest(alerts=[e for _, e in pending]), timeout=60)
            done = time.perf_counter()
            check_acks(resp)
            latencies.extend(done - signed for signed, _ in pending)

    await asyncio.gather(*(one_agent(i, stub, signer) for i, (stub, signer) in enumerate(zip(stubs, signers,
                                                                                              strict=True))))
    return latencies


def usage(pid: int, children: bool = True) -> float:
    """CPU seconds used so far by a process (and its children)."""
    import psutil

    total = 0.0
    if True:
        try:
            root = psutil.Process(pid)
            for p in [root, *(root.children(recursive=True) if children else [])]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total


def postgres_cpu() -> float:
    import psutil

    total = 0.0
    for p in psutil.process_iter(["username", "cpu_times"]):
        if p.info["username"] == "postgres" and p.info["cpu_times"] is not None:
            total += p.info["cpu_times"].user + p.info["cpu_times"].system
    return total


async def run(collector: Collector, states: list[AgentState], args) -> dict:
    address = f"127.0.0.1:{collector.port}"
    signers = [Signer(key=s.identity_key(), agent_id=s.agent_id) for s in states]
    alert = make_test_alert("bullying", 3, TEXT)
    spools = []
    t0 = time.perf_counter()
    for signer in signers:
        spool = []
        for seq in range(1, args.alerts + 1):
            env = pb.SignedAlert()
            env.ParseFromString(signer.envelope(alert, seq))
            spool.append(env)
        spools.append(spool)
    sign_s = time.perf_counter() - t0
    channels = []
    for s in states:
        ca, key, cert = s.credentials()
        channels.append(secure_channel(address, ca, key, cert))
    stubs = [pb_grpc.AgentGatewayStub(c) for c in channels]
    try:
        for c in channels:  # connected (TLS done) before the clock starts
            await asyncio.wait_for(c.channel_ready(), 30)
        cpu0 = (usage(collector.proc.pid), usage(os.getpid(), children=False), postgres_cpu())
        start = time.perf_counter()
        batch_latencies = await drain(stubs, spools, args.batch)
        elapsed = time.perf_counter() - start
        cpu1 = (usage(collector.proc.pid), usage(os.getpid(), children=False), postgres_cpu())
        live_latencies = []
        if args.live_s > 0:
            live_latencies = await live(stubs, signers, args.alerts + 1, args.live_rate, args.live_s)
    finally:
        for c in channels:
            await c.close()
    cpu = [round((b - a) / elapsed, 2) for a, b in zip(cpu0, cpu1, strict=True)]
    return {"elapsed": elapsed, "sign_s": sign_s, "batch_latencies": batch_latencies,
            "live_latencies": live_latencies, "cpu": cpu}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--alerts", type=int, default=500, help="pre-signed alerts in each agent's spool")
    p.add_argument("--batch", type=int, default=100, help="alerts per UploadBatch while draining")
    p.add_argument("--db", default="sqlite", help="'postgresql' (a fresh schema on the local server), 'sqlite' or "
                                                  "a database URL")
    p.add_argument("--workers", type=int, default=1, help="collector worker processes (use PostgreSQL for > 1)")
    p.add_argument("--live-rate", type=float, default=500.0, help="alerts/s signed live, all agents together")
    p.add_argument("--live-s", type=float, default=10.0, help="seconds of the live phase (0: skip it)")
    args = p.parse_args()

    # Before the collector starts: one core of an otherwise idle benchmark. The yardstick is the faster library.
    verify_by_library = verify_rates_one_core()
    verify = max(verify_by_library.values())
    with bench_database(args.db, "ww_ingest") as db_url, tempfile.TemporaryDirectory() as tmp:
        collector = Collector(Path(tmp) / "collector", db_url).init().start(workers=args.workers)
        try:
            token = collector.token(uses=args.agents)
            states = []
            for i in range(args.agents):
                state = AgentState(Path(tmp) / f"agent{i}")
                enroll(state, token)
                states.append(state)
            out = asyncio.run(run(collector, states, args))
            total = sum(len(stored_seqs(collector, s.agent_id)) for s in states)
            import psutil

            root = psutil.Process(collector.proc.pid)
            rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
        finally:
            collector.stop()
    drained = args.agents * args.alerts
    rate = drained / out["elapsed"]
    lat, live_lat = out["batch_latencies"], out["live_latencies"]
    live_n = len(live_lat)
    result = {
        "db": "postgresql" if db_url and db_url.startswith("postgresql") else "sqlite",
        "agents": args.agents, "workers": args.workers, "batch": args.batch,
        "capacity_mode": "backlog drain of alerts pre-signed before timing",
        "drained": drained, "stored": total,
        "alerts_per_s": round(rate, 1),
        "verify_per_s_one_core": round(verify, 1),
        "ingest_to_verify_ratio": round(rate / verify, 3),
        "verify_per_s_by_library": {name: round(v, 1) for name, v in verify_by_library.items()},
        "batch_p50_ms": round(statistics.median(lat) * 1000, 1),
        "batch_p99_ms": round(percentile(lat, 0.99) * 1000, 1),
        "collector_cpu_us_per_alert": round(out["cpu"][0] * 1e6 / rate, 1),
        "cpu_cores_collector": out["cpu"][0], "cpu_cores_client": out["cpu"][1],
        "cpu_cores_postgres": out["cpu"][2] if (db_url or "").startswith("postgresql") else None,
        "live_alerts_per_s": round(live_n / args.live_s, 1) if args.live_s else None,
        "live_sign_to_commit_p50_ms": round(statistics.median(live_lat) * 1000, 1) if live_lat else None,
        "live_sign_to_commit_p99_ms": round(percentile(live_lat, 0.99) * 1000, 1) if live_lat else None,
        "collector_rss_mb": round(rss, 1),
    }
    print(f"capacity (backlog drain, alerts signed before timing): {drained} alerts from {args.agents} agents in "
          f"{out['elapsed']:.2f}s = {result['alerts_per_s']}/s; batch of {args.batch} p50 "
          f"{result['batch_p50_ms']} ms, p99 {result['batch_p99_ms']} ms; CPU cores: collector "
          f"{result['cpu_cores_collector']}, client {result['cpu_cores_client']}, PostgreSQL "
          f"{result['cpu_cores_postgres']}; collector CPU per alert {result['collector_cpu_us_per_alert']} µs "
          f"(verifying one takes {1e6 / verify:.0f} µs)")
    print(f"one core verifies {result['verify_per_s_one_core']}/s: ratio {result['ingest_to_verify_ratio']} "
          f"(by library: " + ", ".join(f"{k} {v:.0f}/s, ratio {rate / v:.3f}" for k, v in verify_by_library.items())
          + ")")
    if live_lat:
        print(f"live ({args.live_rate}/s signed when made, {args.live_s:.0f} s): {live_n} alerts, sign-to-commit "
              f"p50 {result['live_sign_to_commit_p50_ms']} ms, p99 {result['live_sign_to_commit_p99_ms']} ms")
    print(json.dumps(result))
    return 0 if total == drained + live_n else 1


if __name__ == "__main__":
    sys.exit(main())
