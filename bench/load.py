"""Load harness: many simulated agents against a real collector, over mTLS on 127.0.0.1.

Every simulated agent has its own Ed25519 identity, its own ECDSA TLS key and a certificate from the collector's CA,
holds its Commands stream open and heartbeats; a subset uploads signed alerts at a set total rate, each alert
signed when it is generated and timed until its ack (which the collector sends only after the commit). The
collector (`serve --workers N`) runs in its own processes; the agents run in P client processes. Optionally one
collector worker is killed with SIGKILL half-way through; agents reconnect and resend, and the run checks that no
alert was lost or stored twice.

With no arguments it runs the goal configuration on PostgreSQL: 10,000 agents heartbeating every 60 s, 500
alerts/s from 100 of them, two collector workers, one killed mid-run. The last line is one JSON object.

Latency is reported four ways: over the whole run; after the ramp (from --settle seconds after it, the failover
included: the goal's figure); over the steady window (the same, leaving out the failover window); and over the
failover window (alerts signed from 5 s before the kill to --failover-s after it, while the killed worker's agents
reconnect). Lines of p50/p99 and of errors per 10 s of signing time show where any tail came from.

Simulated agents reconnect as real ones do (agent.uplink's policies): an upload retries at once, a command stream
that was up is reopened somewhere within the heartbeat interval. Agents stay connected until every upload is
drained, so the end of the run is not a mass hang-up.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import bench_database, percentile, verify_rates_one_core  # noqa: E402

# ---------------------------------------------------------------------------------------------- provisioning

def provision(data: Path, db_url: str, count: int) -> list[dict]:
    """Make `count` agents: keys, certificates signed by the collector's CA, and their rows in the store."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.x509.oid import NameOID
    from sqlalchemy import insert, select
    from sqlalchemy.orm import Session

    from collector.pki import CollectorPki, PkiPaths, issue_agent_certificate
    from collector.store.db import make_engine
    from collector.store.models import Agent, Site
    from protos.identity import agent_id_of, spki_der

    pki = CollectorPki(PkiPaths(data / "pki"))
    engine = make_engine(db_url)
    agents, rows = [], []
    with Session(engine) as s:
        site = s.scalar(select(Site))
        site_id, site_name = site.id, site.name
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    for _ in range(count):
        identity = ed25519.Ed25519PrivateKey.generate()
        tls = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "load")])).sign(tls, hashes.SHA256()))
        cert = issue_agent_certificate(pki.issuer_key, pki.issuer_cert, csr, identity.public_key(), site_name)
        agent_id = agent_id_of(identity.public_key())
        agents.append({
            "agent_id": agent_id,
            "identity": identity.private_bytes(pem, pkcs8, serialization.NoEncryption()).decode(),
            "tls_key": tls.private_bytes(pem, pkcs8, serialization.NoEncryption()).decode(),
            "cert": cert.public_bytes(pem).decode(),
        })
        rows.append({"id": agent_id, "site_id": site_id, "identity_public_key": spki_der(identity.public_key()),
                     "cert_serial": format(cert.serial_number, "x"), "cert_not_after": cert.not_valid_after_utc,
                     "hostname": f"load-{len(rows):05d}", "os": "linux", "os_version": "", "agent_version": "load",
                     "bundle_version": "", "age_band": "secondary", "status": "active",
                     "enrolled_at": dt.datetime.now(dt.UTC), "last_instance_id": "", "coverage_gaps": [],
                     "spool_depth": 0})
    with engine.begin() as conn:
        for i in range(0, len(rows), 1000):
            conn.execute(insert(Agent), rows[i:i + 1000])
    engine.dispose()
    return agents


# ---------------------------------------------------------------------------------------------- client side

async def run_shard(shard: list[dict], uploaders: set[str], ca_pem: bytes, address: str, rate_each: float,
                    heartbeat_s: float, duration: float, ramp_per_s: float, start_at: float) -> dict:
    import grpc
    from cryptography.hazmat.primitives import serialization

    from agent.alerts import Signer, make_test_alert
    from agent.channel import secure_channel
    from agent.uplink import command_backoff, stream_reopen_delay, upload_backoff
    from protos import wardwatch_pb2 as pb
    from protos import wardwatch_pb2_grpc as pb_grpc

    stats = {"connected": 0, "max_connected": 0, "heartbeats": 0, "stored": 0, "duplicate": 0, "rejected": 0,
             "errors": 0, "generated": 0, "latencies_ms": [], "stored_keys": [], "unacked": 0, "error_kinds": {},
             "error_details": {}, "error_times": [],
             "heartbeat_times": []}

    def error(kind: str, exc: BaseException) -> None:
        stats["errors"] += 1
        code = exc.code().name if isinstance(exc, grpc.RpcError) and hasattr(exc, "code") else type(exc).__name__
        key = f"{kind}:{code}"
        stats["error_kinds"][key] = stats["error_kinds"].get(key, 0) + 1
        stats["error_times"].append((time.time(), key))
        if key not in stats["error_details"] and hasattr(exc, "details"):  # one example of each, to say why
            stats["error_details"][key] = (exc.details() or "")[:200]
    stop_generating = asyncio.Event()
    uploading = {a["agent_id"] for a in shard if a["agent_id"] in uploaders}
    uploads_drained = asyncio.Event()
    if not uploading:
        uploads_drained.set()

    async def agent_task(index: int, a: dict) -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()) + index / ramp_per_s)
        channel = secure_channel(address, ca_pem, a["tls_key"].encode(), a["cert"].encode())
        stub = pb_grpc.AgentGatewayStub(channel)
        background = [asyncio.create_task(hold_commands(stub)), asyncio.create_task(heartbeats(stub))]
        try:
            if a["agent_id"] in uploaders:
                try:
                    await upload(stub, a)  # returns once everything it generated is acked
                finally:
                    uploading.discard(a["agent_id"])
                    if not uploading:
                        uploads_drained.set()
            else:
                # Stay connected until the uploads are drained and a little longer (other client processes may
                # still be draining): thousands of agents hanging up at once is not what the run measures.
                await stop_generating.wait()
                await uploads_drained.wait()
                await asyncio.sleep(5)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await channel.close()

    async def hold_commands(stub) -> None:
        backoff = command_backoff()  # the real agent's reconnect policy, so a failover storms as it would
        while not stop_generating.is_set():
            connected = False
            opened = time.monotonic()
            try:
                stream = stub.Commands(pb.CommandsRequest(instance_id="load"))
                stats["connected"] += 1
                connected = True
                stats["max_connected"] = max(stats["max_connected"], stats["connected"])
                async for _ in stream:
                    pass
            except grpc.RpcError as exc:
                if not stop_generating.is_set():  # streams closed at the end of the run are not errors
                    error("commands", exc)
            except asyncio.CancelledError:
                raise
            finally:
                if connected:
                    stats["connected"] -= 1
            await asyncio.sleep(stream_reopen_delay(time.monotonic() - opened, backoff, heartbeat_s))

    async def heartbeats(stub) -> None:
        await asyncio.sleep(random.uniform(0, heartbeat_s))
        while not stop_generating.is_set():
            req = pb.HeartbeatRequest(instance_id="load", bundle_version="")
            req.clock.GetCurrentTime()
            try:
                await stub.Heartbeat(req, timeout=30)
                stats["heartbeats"] += 1
                stats["heartbeat_times"].append(time.time())
            except grpc.RpcError as exc:
                if not stop_generating.is_set():
                    error("heartbeat", exc)
            await asyncio.sleep(heartbeat_s)

    async def upload(stub, a: dict) -> None:
        key = serialization.load_pem_private_key(a["identity"].encode(), None)
        signer = Signer(key=key, agent_id=a["agent_id"])
        alert = make_test_alert("bullying", 3, "load test alert of a typical length, nothing more")
        pending: list[tuple[int, float, pb.SignedAlert]] = []
        seq = 0
        backoff = upload_backoff()
        next_at = time.monotonic() + random.uniform(0, 1 / rate_each)
        while True:
            now = time.monotonic()
            if not stop_generating.is_set():
                while now >= next_at:
                    seq += 1
                    env = pb.SignedAlert()
                    env.ParseFromString(signer.envelope(alert, seq))  # signed now: latency starts here
                    pending.append((seq, time.perf_counter(), time.time(), env))
                    stats["generated"] += 1
                    next_at += 1 / rate_each
            elif not pending:
                return
            if pending:
                batch = pending[:100]
                try:
                    resp = await stub.UploadBatch(pb.UploadBatchRequest(alerts=[e for *_, e in batch]), timeout=30)
                except grpc.RpcError as exc:
                    error("upload", exc)
                    await asyncio.sleep(backoff.next_delay())
                    continue
                backoff.reset()
                done = time.perf_counter()
                settled = set()
                for ack in resp.acks:
                    s, signed_at, signed_wall, _ = batch[ack.index]
                    if ack.status == pb.AlertAck.STATUS_STORED:
                        stats["stored"] += 1
                        stats["stored_keys"].append(s)
                        stats["latencies_ms"].append((signed_wall, (done - signed_at) * 1000))
                        settled.add(ack.index)
                    elif ack.status == pb.AlertAck.STATUS_DUPLICATE:
                        stats["duplicate"] += 1
                        stats["latencies_ms"].append((signed_wall, (done - signed_at) * 1000))
                        settled.add(ack.index)
                    elif ack.status == pb.AlertAck.STATUS_REJECTED:
                        stats["rejected"] += 1
                        settled.add(ack.index)
                pending = [p for i, p in enumerate(batch) if i not in settled] + pending[len(batch):]
                continue
            await asyncio.sleep(max(0.0, min(next_at - time.monotonic(), 0.5)))

    async def stopper() -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()) + duration)
        stop_generating.set()

    tasks = [asyncio.create_task(agent_task(i, a)) for i, a in enumerate(shard)]
    stopper_task = asyncio.create_task(stopper())
    # Uploaders finish when everything they generated is acked; the others end with stop_generating.
    done, pending_tasks = await asyncio.wait(tasks, timeout=duration + 120 + len(shard) / ramp_per_s)
    stats["unacked"] = len(pending_tasks)
    for t in pending_tasks:
        t.cancel()
    stopper_task.cancel()
    stats["errors"] += sum(1 for t in done if t.exception() is not None and not t.cancelled())
    return stats


def shard_main(args: tuple) -> dict:
    shard, uploaders, ca_pem, address, rate_each, heartbeat_s, duration, ramp, start_at = args
    return asyncio.run(run_shard(shard, set(uploaders), ca_pem, address, rate_each, heartbeat_s, duration, ramp,
                                 start_at))


# ---------------------------------------------------------------------------------------------- orchestration

def collector_usage(pid: int) -> tuple[float, float]:
    """(RSS MB, CPU seconds) of a collector process and its workers."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        rss = sum(p.memory_info().rss for p in procs) / 2**20
        cpu = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
        return rss, cpu
    except psutil.Error:
        return 0.0, 0.0


def connections_per_worker(pid: int, port: int) -> list[int]:
    """Agents' connections held by each serving worker of the collector `pid` (the standby holds none)."""
    import psutil

    counts = []
    for child in psutil.Process(pid).children():
        try:
            held = sum(1 for c in child.net_connections("tcp")
                       if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)
        except psutil.Error:
            continue
        if held:
            counts.append(held)
    return sorted(counts, reverse=True)


def stored_counts(db_url: str, agent_ids: list[str]) -> tuple[dict[str, list[int]], int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT agent_id, seq FROM alerts")).all()
        doubled = conn.execute(text(
            "SELECT count(*) FROM (SELECT agent_id, seq FROM alerts GROUP BY agent_id, seq HAVING count(*) > 1) d"
        )).scalar()
    engine.dispose()
    wanted = set(agent_ids)
    by_agent: dict[str, list[int]] = {}
    for agent_id, seq in rows:
        if agent_id in wanted:
            by_agent.setdefault(agent_id, []).append(seq)
    return by_agent, int(doubled or 0)


def pct(ordered: list[float], q: float) -> float | None:
    value = percentile(ordered, q)
    return None if value is None else round(value, 1)


def main() -> int:
    p = argparse.ArgumentParser(description="WardWatch load harness (see module docstring)")
    p.add_argument("--db", default="postgresql", help="'postgresql', 'sqlite' or a database URL")
    p.add_argument("--agents", type=int, default=10_000)
    p.add_argument("--uploaders", type=int, default=100)
    p.add_argument("--rate", type=float, default=500.0, help="alerts per second, all uploaders together")
    p.add_argument("--heartbeat", type=float, default=60.0, help="seconds between heartbeats per agent")
    p.add_argument("--duration", type=float, default=150.0, help="seconds of steady load after the ramp")
    p.add_argument("--ramp", type=float, default=50.0, help="agents connecting per second per client process")
    p.add_argument("--settle", type=float, default=10.0,
                   help="seconds after the ramp before the steady window starts (the collector catches up)")
    p.add_argument("--workers", type=int, default=2, help="collector worker processes")
    p.add_argument("--clients", type=int, default=4, help="client processes simulating agents")
    p.add_argument("--kill-replica", action=argparse.BooleanOptionalAction, default=True,
                   help="SIGKILL one collector worker half-way through (default on)")
    p.add_argument("--failover-s", type=float, default=30.0,
                   help="seconds after the kill counted as the failover window (its agents reconnect); alerts "
                        "signed in the 5 s before the kill count too (they may have been in flight to it)")
    args = p.parse_args()

    from tests.harness import Collector

    verify_by_library = verify_rates_one_core()
    verify = max(verify_by_library.values())
    with bench_database(args.db, "ww_load") as db_url, tempfile.TemporaryDirectory() as tmp:
        collector = Collector(Path(tmp) / "collector", db_url).init()
        url = db_url or f"sqlite:///{collector.data / 'wardwatch.db'}"
        try:
            t0 = time.time()
            agents = provision(collector.data, url, args.agents)
            print(f"provisioned {len(agents)} agents in {time.time() - t0:.1f}s", flush=True)
            collector.start(workers=args.workers)
            ca_pem = (collector.data / "pki" / "ca.crt").read_bytes()
            address = f"127.0.0.1:{collector.port}"
            uploaders = [a["agent_id"] for a in agents[:args.uploaders]]
            rate_each = args.rate / max(1, args.uploaders)
            shards = [agents[i::args.clients] for i in range(args.clients)]
            ramp_s = len(shards[0]) / args.ramp
            start_at = time.time() + 2
            ctx = mp.get_context("spawn")  # no gRPC state crosses a fork
            with ctx.Pool(args.clients) as pool:
                result = pool.map_async(shard_main, [
                    (shard, uploaders, ca_pem, address, rate_each, args.heartbeat, ramp_s + args.duration,
                     args.ramp, start_at) for shard in shards])
                peak_rss, killed, killed_at = 0.0, None, None
                steady_from = start_at + ramp_s + args.settle
                steady_until = start_at + ramp_s + args.duration
                cpu_marks: dict[str, tuple[float, float]] = {}
                agents_per_worker: list[int] = []
                while not result.ready():
                    time.sleep(1)
                    rss, cpu = collector_usage(collector.proc.pid)
                    peak_rss = max(peak_rss, rss)
                    for mark, when in (("start", steady_from), ("end", steady_until)):
                        if mark not in cpu_marks and time.time() >= when:
                            cpu_marks[mark] = (time.time(), cpu)
                    if not agents_per_worker and time.time() >= steady_until - 10:  # the balance at the end
                        agents_per_worker = connections_per_worker(collector.proc.pid, collector.port)
                    if args.kill_replica and killed is None and time.time() > steady_from + args.duration / 2:
                        import psutil

                        workers = [p for p in psutil.Process(collector.proc.pid).children()
                                   if "--worker-index" in p.cmdline()]  # a serving worker, not the standby
                        if workers:
                            killed = workers[-1].pid
                            os.kill(killed, signal.SIGKILL)
                            killed_at = time.time()
                            print(f"killed collector worker {killed}", flush=True)
                shard_stats = result.get()
        finally:
            collector.stop()
        by_agent, doubled = stored_counts(url, uploaders)

    cpu_pct = 0.0
    if "start" in cpu_marks and "end" in cpu_marks:  # a killed worker's CPU drops out; the figure is a floor
        (t1, c1), (t2, c2) = cpu_marks["start"], cpu_marks["end"]
        cpu_pct = max(0.0, (c2 - c1) / (t2 - t1) * 100)
    generated = sum(s["generated"] for s in shard_stats)
    stored_rows = sum(len(v) for v in by_agent.values())
    timed = [x for s in shard_stats for x in s["latencies_ms"]]  # (signed at, wall clock; ms to its ack)
    latencies = sorted(ms for _, ms in timed)
    # Steady: signed after the ramp and outside the failover window (from the kill until --failover-s later).
    fail_from, fail_to = (killed_at - 5, killed_at + args.failover_s) if killed_at else (None, None)
    steady = sorted(ms for at, ms in timed if at >= steady_from and not (fail_from and fail_from <= at < fail_to))
    failover = sorted(ms for at, ms in timed if fail_from and fail_from <= at < fail_to)
    # After the ramp, failover included: the goal's figure (p99 under 1 s at 500/s while a replica is killed).
    after_ramp = sorted(ms for at, ms in timed if at >= steady_from)
    heartbeats_total = sum(s["heartbeats"] for s in shard_stats)
    run_s = ramp_s + args.duration
    error_kinds: dict[str, int] = {}
    error_details: dict[str, str] = {}
    for s in shard_stats:
        for k, v in s["error_kinds"].items():
            error_kinds[k] = error_kinds.get(k, 0) + v
        error_details = s["error_details"] | error_details
    stored_keys_total = sum(len(s["stored_keys"]) for s in shard_stats)
    result = {
        "db": "postgresql" if url.startswith("postgresql") else "sqlite",
        "workers": args.workers,
        "connected_agents": sum(s["max_connected"] for s in shard_stats),
        # In the steady window only: during the ramp fewer agents are connected.
        "heartbeats_per_s": round(sum(1 for s in shard_stats for t in s["heartbeat_times"]
                                      if steady_from <= t < steady_until) / max(1.0, steady_until - steady_from), 1),
        "heartbeats_expected_per_s": round(args.agents / args.heartbeat, 1),
        "heartbeats": heartbeats_total,
        "alerts_per_s": round(stored_rows / run_s, 1),
        "target_alerts_per_s": args.rate,
        "verify_per_s_one_core": round(verify, 1),
        "ingest_to_verify_ratio": round(stored_rows / run_s / verify, 3),
        "verify_per_s_by_library": {name: round(v, 1) for name, v in verify_by_library.items()},
        "p50_ms": pct(latencies, 0.50),
        "p99_ms": pct(latencies, 0.99),
        "max_ms": round(latencies[-1], 1) if latencies else None,
        "after_ramp_p50_ms": pct(after_ramp, 0.50),
        "after_ramp_p99_ms": pct(after_ramp, 0.99),
        "after_ramp_max_ms": round(after_ramp[-1], 1) if after_ramp else None,
        "after_ramp_alerts": len(after_ramp),
        "steady_p50_ms": pct(steady, 0.50),
        "steady_p99_ms": pct(steady, 0.99),
        "steady_alerts": len(steady),
        "failover_window_s": args.failover_s if killed_at else None,
        "failover_p50_ms": pct(failover, 0.50),
        "failover_p99_ms": pct(failover, 0.99),
        "failover_max_ms": round(failover[-1], 1) if failover else None,
        "failover_alerts": len(failover),
        "generated": generated,
        "stored": stored_rows,
        "lost": generated - stored_rows,
        "duplicated": doubled + max(0, stored_keys_total - stored_rows),
        "errors": sum(s["errors"] for s in shard_stats),
        "error_kinds": error_kinds,
        "uploaders_not_drained": sum(s["unacked"] for s in shard_stats),
        "replica_killed": killed is not None,
        "agents_per_worker_at_end": agents_per_worker,
        "collector_rss_mb": round(peak_rss, 1),
        "collector_cpu_pct": round(cpu_pct, 1),
        "run_s": round(run_s, 1),
    }
    print(f"{result['connected_agents']} agents connected; {result['heartbeats_per_s']} heartbeats/s; "
          f"{result['alerts_per_s']} alerts/s stored (target {args.rate}); sign-to-commit over the whole run p50 "
          f"{result['p50_ms']} ms p99 {result['p99_ms']} ms max {result['max_ms']} ms; lost {result['lost']}, "
          f"duplicated {result['duplicated']}; collector RSS {result['collector_rss_mb']} MB, CPU "
          f"{result['collector_cpu_pct']}%")
    print(f"after the ramp (failover included): p50 {result['after_ramp_p50_ms']} ms, p99 "
          f"{result['after_ramp_p99_ms']} ms, max {result['after_ramp_max_ms']} ms over {len(after_ramp)} alerts")
    print(f"steady (after the ramp, outside the failover window): p50 {result['steady_p50_ms']} ms, p99 "
          f"{result['steady_p99_ms']} ms over {len(steady)} alerts")
    if killed_at:
        print(f"failover window (signed 5 s before the kill to {args.failover_s:.0f} s after): p50 "
              f"{result['failover_p50_ms']} ms, p99 "
              f"{result['failover_p99_ms']} ms, max {result['failover_max_ms']} ms over {len(failover)} alerts")
    print(f"agents per worker 10 s before the end: {agents_per_worker}")
    print(f"errors by call and status: {error_kinds}")
    error_buckets: dict[int, dict[str, int]] = {}
    for s in shard_stats:
        for at, kind in s["error_times"]:
            bucket = error_buckets.setdefault(int((at - start_at) // 10) * 10, {})
            bucket[kind] = bucket.get(kind, 0) + 1
    print("errors by 10 s (s from start): " + "; ".join(
        f"{t}: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        for t, kinds in sorted(error_buckets.items())))
    for kind, details in sorted(error_details.items()):
        print(f"  e.g. {kind}: {details}")
    buckets: dict[int, list[float]] = {}
    for at, ms in timed:
        buckets.setdefault(int((at - start_at) // 10) * 10, []).append(ms)
    print("by 10 s of signing time (s from start: alerts, p50/p99 ms): " + "; ".join(
        f"{t}: {len(v)}, {pct(sorted(v), 0.5):.0f}/{pct(sorted(v), 0.99):.0f}" for t, v in sorted(buckets.items()))
        + (f"; kill at {killed_at - start_at:.0f} s" if killed_at else ""))
    print(json.dumps(result))
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
