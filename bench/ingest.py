"""Ingest benchmark: N simulated agents with real keys and certificates upload signed alerts over mTLS.

The collector runs as its own process (`wardwatch-collector serve`); the agents are real gRPC clients in this
process. Prints alerts/s committed, p50/p99 upload latency, and, in the same run, the raw Ed25519 verify rate of
one core, so the ratio shows how close ingest comes to the cost of checking signatures alone.
Usage: bench/ingest.py [--agents 20] [--alerts 200] [--batch 50] [--db URL]. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402

from agent.alerts import Signer, make_test_alert  # noqa: E402
from agent.channel import secure_channel  # noqa: E402
from agent.enrol import enroll  # noqa: E402
from agent.state import AgentState  # noqa: E402
from protos import wardwatch_pb2 as pb  # noqa: E402
from protos import wardwatch_pb2_grpc as pb_grpc  # noqa: E402
from tests.harness import Collector, stored_seqs  # noqa: E402


def verify_rate_one_core(seconds: float = 2.0) -> float:
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key()
    payload = make_test_alert("bullying", 3, "benchmark alert text of a typical length").SerializeToString()
    sig = key.sign(payload)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(500):
            public.verify(sig, payload)
        n += 500
    return n / (time.perf_counter() - start)


async def upload_all(states: list[AgentState], address: str, per_agent: int, batch: int) -> list[float]:
    latencies: list[float] = []

    async def one_agent(state: AgentState) -> None:
        signer = Signer(key=state.identity_key(), agent_id=state.agent_id)
        alert = make_test_alert("bullying", 3, "benchmark alert text of a typical length")
        envelopes = []
        for seq in range(1, per_agent + 1):
            env = pb.SignedAlert()
            env.ParseFromString(signer.envelope(alert, seq))
            envelopes.append(env)
        ca, key, cert = state.credentials()
        async with secure_channel(address, ca, key, cert) as channel:
            stub = pb_grpc.AgentGatewayStub(channel)
            for i in range(0, per_agent, batch):
                t0 = time.perf_counter()
                resp = await stub.UploadBatch(pb.UploadBatchRequest(alerts=envelopes[i:i + batch]), timeout=60)
                latencies.append(time.perf_counter() - t0)
                bad = [a for a in resp.acks if a.status != pb.AlertAck.STATUS_STORED]
                if bad:
                    raise SystemExit(f"unexpected ack: {bad[0]}")

    await asyncio.gather(*(one_agent(s) for s in states))
    return latencies


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--alerts", type=int, default=200, help="alerts per agent")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--db", default=None, help="database URL (default: SQLite in a temp dir)")
    p.add_argument("--workers", type=int, default=1, help="collector worker processes (use PostgreSQL for > 1)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        collector = Collector(Path(tmp) / "collector", args.db).init().start(workers=args.workers)
        try:
            token = collector.token(uses=args.agents)
            states = []
            for i in range(args.agents):
                state = AgentState(Path(tmp) / f"agent{i}")
                enroll(state, token)
                states.append(state)
            address = f"127.0.0.1:{collector.port}"
            start = time.perf_counter()
            latencies = asyncio.run(upload_all(states, address, args.alerts, args.batch))
            elapsed = time.perf_counter() - start
            total = sum(len(stored_seqs(collector, s.agent_id)) for s in states)
            import psutil

            procs = [psutil.Process(collector.proc.pid), *psutil.Process(collector.proc.pid).children(recursive=True)]
            rss = sum(p.memory_info().rss for p in procs) / 2**20
        finally:
            collector.stop()
    expected = args.agents * args.alerts
    verify = verify_rate_one_core()
    lat = sorted(latencies)
    result = {
        "db": "postgresql" if args.db and args.db.startswith("postgresql") else "sqlite",
        "agents": args.agents, "workers": args.workers, "alerts": expected, "stored": total, "batch": args.batch,
        "alerts_per_s": round(total / elapsed, 1),
        "upload_p50_ms": round(statistics.median(lat) * 1000, 2),
        "upload_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2),
        "verify_per_s_one_core": round(verify, 1),
        "ingest_to_verify_ratio": round(total / elapsed / verify, 3),
        "collector_rss_mb": round(rss, 1),
    }
    print(f"{total}/{expected} alerts from {args.agents} agents in {elapsed:.2f}s "
          f"({result['alerts_per_s']}/s); upload p50 {result['upload_p50_ms']} ms, p99 {result['upload_p99_ms']} ms; "
          f"one core verifies {result['verify_per_s_one_core']}/s")
    print(json.dumps(result))
    return 0 if total == expected else 1


if __name__ == "__main__":
    sys.exit(main())
