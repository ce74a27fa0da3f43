"""`wardwatch-collector serve`: the gRPC gateway (mTLS + enrolment port) and the web console in one process."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time

import grpc

from collector import steering
from collector.config import CollectorConfig, split_hostport
from collector.context import open_store
from collector.errors import CollectorError
from collector.fleet_health import silent_task
from collector.gateway import AgentGateway
from collector.pki import CollectorPki, PkiPaths
from collector.protect.schedule import start_retention_schedule
from collector.reports.schedule import weekly_task
from protos import wardwatch_pb2_grpc as pb_grpc

log = logging.getLogger("wardwatch.serve")

# Why these numbers:
# - keepalive 60 s / timeout 20 s: finds agents whose laptop lid closed or whose Wi-Fi dropped within ~80 s, and
#   keeps school firewalls' idle-TCP timers (often 5-15 min) from cutting the command stream, without pinging
#   10,000 agents more than ~170 times a second.
# - min ping interval 20 s with 2 strikes: an agent (or anything else) pinging faster is told to go away.
# - max_connection_age 30 min (+5 min grace): every connection is recycled, so an L4 load balancer in front of
#   several collector replicas rebalances the fleet after a replica restarts instead of leaving it lopsided.
# - 4 MiB messages: the agent keeps batches far below that; anything larger is refused by gRPC itself.
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
    ("grpc.http2.max_ping_strikes", 2),
    ("grpc.max_connection_age_ms", 30 * 60_000),
    ("grpc.max_connection_age_grace_ms", 5 * 60_000),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    # Every worker runs several servers on one port (see accept_loops), and --workers shares it between
    # processes: the kernel spreads connections across all their listeners. A second collector started by
    # mistake on a port in use is refused before anything binds (_check_port_free).
    ("grpc.so_reuseport", 1),
]


def tune_gc() -> None:
    """A collector holding thousands of agents' connections keeps millions of long-lived objects, and CPython's
    full collections walked them all with the event loop stopped: 100-400 ms pauses, several a minute, measured
    at 4,000 agents, which every call in flight waited out. What exists after start-up is frozen out of the
    collector's view, and the generations are collected less often (young cycles are still found)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def database_threads() -> int:
    """Threads for database calls and signature checks per worker: WARDWATCH_DB_THREADS, default 16."""
    text = os.environ.get("WARDWATCH_DB_THREADS", "16")
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise CollectorError(f"WARDWATCH_DB_THREADS must be a whole number from 1 to 256, not {text!r}")
    return int(text)


def accept_loops() -> int:
    """gRPC servers per worker: WARDWATCH_ACCEPT_LOOPS, default 4.

    A grpc.aio server takes new calls from gRPC's core one at a time, each after a trip around the event loop
    (grpcio 1.85), and under load a trip takes milliseconds. At 10,000 agents (about 335 calls a second per
    worker) one server per worker fell behind: calls queued inside gRPC, uploads waited there for seconds, and
    calls left queued for 30 s were cancelled by gRPC itself. Each server has its own accept loop, and they all
    listen on the same port (SO_REUSEPORT), so N servers accept N calls a trip. Measured with bench/load.py:
    steady p50 265 ms with one server, 39 ms with four, and no calls cancelled after the ramp."""
    text = os.environ.get("WARDWATCH_ACCEPT_LOOPS", "4")
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise CollectorError(f"WARDWATCH_ACCEPT_LOOPS must be a whole number from 1 to 64, not {text!r}")
    return int(text)


def _check_port_free(address: str, what: str) -> None:
    """Refuse a port another process listens on. The servers bind with SO_REUSEPORT, which would otherwise let a
    second collector started by mistake share the port and take half the fleet's connections."""
    host, port = split_hostport(address, what)
    if not port:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CollectorError(f"cannot listen on {address} for {what}: {exc.strerror}") from exc
    family, kind, proto, _name, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart's TIME_WAIT is no conflict
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            raise CollectorError(f"cannot listen on {address} for {what}: {exc.strerror} "
                                 "(is another collector running?)") from exc


def _enrol_default(listen: str) -> str:
    host, port = split_hostport(listen, "--listen")
    return f"{host}:{port + 1}" if port else f"{host}:0"


def _bind(server: grpc.aio.Server, address: str, creds: grpc.ServerCredentials, what: str) -> int:
    split_hostport(address, what)
    try:
        port = server.add_secure_port(address, creds)
    except RuntimeError as exc:
        raise CollectorError(f"cannot listen on {address} for {what}: {exc}") from exc
    if port == 0:
        raise CollectorError(f"cannot listen on {address} for {what} (address in use?)")
    return port


def _host(address: str) -> str:
    return address.rpartition(":")[0]


async def _await_promotion() -> int | None:
    """A standby waits here, fully imported and with its credentials loaded, until the supervisor writes the index
    of a worker that died to its stdin. None if the supervisor went away (end of file) or wrote nonsense."""
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.readline)
    text = line.decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


async def _serve(cfg: CollectorConfig, engine, listen: str, enrol_listen: str, web_listen: str | None,
                 standby: bool = False, replacing: bool = False) -> None:
    db_threads = database_threads()
    pki = CollectorPki(PkiPaths(cfg.pki_dir))
    gateway = AgentGateway(engine, pki)
    # The chain includes the CA so an enrolling agent can compare it with the pin it was given.
    identity = [(pki.server_key_pem, pki.server_cert_pem + pki.ca_cert_pem)]
    mtls = grpc.ssl_server_credentials(identity, root_certificates=pki.ca_cert_pem, require_client_auth=True)
    # Enrolment happens before the agent has a certificate: server-authenticated TLS only. Every other method
    # refuses a caller without a client certificate, so this port can do nothing but enrol.
    enrol_tls = grpc.ssl_server_credentials(identity, require_client_auth=False)
    app = _web_app(cfg, engine) if web_listen else None
    if standby:
        # Nothing is bound yet: a listening socket would take its share of the port's connections (SO_REUSEPORT)
        # before this process serves them.
        index = await _await_promotion()
        if index is None:
            return
        log.info("standby taking the place of worker %d", index)
        replacing = True
        if index != 0:  # worker 0 serves the console
            web_listen, app = None, None
    servers = []
    for index in range(accept_loops()):  # one gateway, several accept loops on the agents' port
        server = grpc.aio.server(options=SERVER_OPTIONS)
        pb_grpc.add_AgentGatewayServicer_to_server(gateway, server)
        if index == 0:
            port = _bind(server, listen, mtls, "--listen")
            enrol_port = _bind(server, enrol_listen, enrol_tls, "--enrol-listen")  # enrolment is rare: one loop
        else:
            _bind(server, f"{_host(listen)}:{port}", mtls, "--listen")
        servers.append(server)
    for server in servers:
        await server.start()
    if replacing:
        _take_the_dead_workers_agents(port, gateway.policy.heartbeat_interval_s)
    tune_gc()
    # Database calls run in these threads (asyncio.to_thread); most of their time is spent waiting on PostgreSQL
    # or for the GIL, so asyncio's default (cores + 4 = 6 here) left calls queued while the CPU sat idle.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(db_threads, thread_name_prefix="db"))
    endpoints = {"listen": f"{_host(listen)}:{port}", "enrol": f"{_host(enrol_listen)}:{enrol_port}",
                 "web": "", "pid": os.getpid()}
    if web_listen is not None:  # the first (or only) worker publishes where it is, as soon as agents can enrol
        _publish(cfg, endpoints)
    # Daily retention, the weekly summary and the silent-device watch: safe on every worker and replica (each
    # claims its work first).
    schedules = [task for task in (start_retention_schedule(cfg, engine),
                                   asyncio.create_task(weekly_task(cfg, engine), name="wardwatch-weekly"),
                                   asyncio.create_task(silent_task(cfg, engine), name="wardwatch-silent")) if task]

    web_server, web_task, web_url = None, None, ""
    if app is not None:
        web_server, web_task, web_url = await _start_web(app, cfg, web_listen)

    if web_listen is not None:
        _publish(cfg, endpoints | {"web": web_url})
        print(f"WardWatch collector serving agents on {endpoints['listen']} (mTLS), enrolment on "
              f"{endpoints['enrol']}" + (f", console at {web_url}" if web_url else ""), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: finishing calls in flight")
    for task in schedules:
        task.cancel()
    await asyncio.gather(*(server.stop(grace=5) for server in servers))
    if web_task is not None:
        # uvicorn's own shutdown: cancelling its task instead logged a lifespan traceback at every stop.
        web_server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(web_task, timeout=10)
    if web_listen is not None:
        with contextlib.suppress(OSError):
            cfg.endpoints_file.unlink()


def _take_the_dead_workers_agents(port: int, heartbeat_interval_s: int) -> None:
    """A worker that replaces a dead one takes every new connection to the port for a while: the dead worker's
    agents, which reconnect within one heartbeat interval, then land here instead of being hashed over the
    survivors too, which already carry their own share (collector/steering.py)."""
    window = STEER_INTERVALS * heartbeat_interval_s
    if not steering.steer_to_self(port):
        return
    log.info("taking the port's new connections for %d s: the agents of the worker replaced", window)

    def stop() -> None:
        steering.stop_steering(port)
        log.info("new connections are spread over every worker again")

    asyncio.get_running_loop().call_later(window, stop)


def _publish(cfg: CollectorConfig, endpoints: dict) -> None:
    """Write run/endpoints.json atomically: `token create` reads the addresses agents should dial from it."""
    cfg.run_dir.mkdir(exist_ok=True)
    tmp = cfg.endpoints_file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(endpoints))
    tmp.replace(cfg.endpoints_file)


def _web_app(cfg: CollectorConfig, engine):
    try:
        from collector.web.app import create_app
    except ImportError:
        return None
    return create_app(cfg, engine)


async def _start_web(app, cfg: CollectorConfig, web_listen: str):
    import uvicorn

    host, port = split_hostport(web_listen, "--web")
    pki = PkiPaths(cfg.pki_dir)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            ssl_certfile=str(pki.web_cert), ssl_keyfile=str(pki.web_key), lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # the collector owns SIGTERM/SIGINT
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise CollectorError(f"the web console could not start on {web_listen}")
        await asyncio.sleep(0.05)
    return server, task, f"https://{host}:{port}/"


def cmd_serve(args: argparse.Namespace) -> int:
    with open_store(args) as (cfg, engine):
        listen = args.listen or cfg.listen
        split_hostport(listen, "--listen")
        enrol_listen = args.enrol_listen or cfg.enrol_listen or _enrol_default(listen)
        web_listen = args.web or cfg.web_listen
        if args.workers < 1:
            raise CollectorError("--workers must be at least 1")
        database_threads()  # a bad setting stops here with one line, not in every worker
        accept_loops()
        if args.standby or args.worker_index is not None:
            _exit_with_supervisor()
        if args.standby:  # the --workers supervisor's spare: it learns its index when promoted
            asyncio.run(_serve(cfg, engine, listen, enrol_listen, web_listen, standby=True))
            return 0
        if args.worker_index is not None:  # one worker of a --workers supervisor, which checked the ports
            web = web_listen if args.worker_index == 0 else None
            asyncio.run(_serve(cfg, engine, listen, enrol_listen, web, replacing=args.replacing))
            return 0
        _check_port_free(listen, "--listen")
        _check_port_free(enrol_listen, "--enrol-listen")
        if args.workers == 1:
            asyncio.run(_serve(cfg, engine, listen, enrol_listen, web_listen))
            return 0
        for address, what in ((listen, "--listen"), (enrol_listen, "--enrol-listen")):
            if split_hostport(address, what)[1] == 0:
                raise CollectorError(f"{what} needs a fixed port with --workers (workers share it)")
        if engine.dialect.name == "sqlite":
            log.warning("several workers on SQLite serialise on one database file; use PostgreSQL for scale")
    return supervise_workers(args, listen, enrol_listen, web_listen)


# A new standby starts this long after the last one was promoted: its start-up (about 2 s of one core) would
# otherwise compete with the surviving workers while they carry the dead worker's agents.
STANDBY_RESPAWN_DELAY_S = 30.0
# A replacement worker takes the port's new connections for this many heartbeat intervals: the dead worker's idle
# agents reopen their command streams at a random moment within one interval (agent.uplink.stream_reopen_delay).
STEER_INTERVALS = 2
# Set for the workers the supervisor starts, so a worker can tell its supervisor died before it could ask to follow.
SUPERVISOR_PID_ENV = "WARDWATCH_SUPERVISOR_PID"


def supervise_workers(args: argparse.Namespace, listen: str, enrol_listen: str, web_listen: str) -> int:
    """Start N worker processes and one warm standby (each creates its gRPC servers after it starts: gRPC must not
    cross a fork), put the standby in the place of any worker that dies, and stop them all on SIGTERM/SIGINT.

    Why a standby: a worker started from cold needs about 2 s to import and bind. Agents whose worker died
    reconnect within a quarter of a second, so they all landed on the survivors, which then carried the whole
    fleet's uploads until their connections were recycled 30 minutes later (measured with bench/load.py: p99
    1.2-2.5 s after a kill against 0.5 s without). The standby binds within milliseconds of the death and takes
    the port's new connections for a while, so the reconnecting agents land on it rather than on survivors."""
    base = [sys.executable, "-m", "collector.cli", "--data", str(args.data)]
    if args.db:
        base += ["--db", args.db]
    base += ["serve", "--listen", listen, "--enrol-listen", enrol_listen, "--web", web_listen,
             "--workers", str(args.workers)]
    env = {**os.environ, SUPERVISOR_PID_ENV: str(os.getpid())}
    procs: dict[int, subprocess.Popen] = {}
    standby: subprocess.Popen | None = None
    standby_due = 0.0
    stopping = False

    def stop(_signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    restarts: dict[int, list[float]] = {}
    while not stopping:
        for index in range(args.workers):
            proc = procs.get(index)
            if proc is None or proc.poll() is not None:
                if proc is not None:
                    log.warning("worker %d exited with %s; replacing it", index, proc.returncode)
                recent = [t for t in restarts.get(index, []) if time.monotonic() - t < 60]
                if len(recent) >= 5:
                    log.error("worker %d keeps dying; waiting before the next restart", index)
                    continue
                restarts[index] = [*recent, time.monotonic()]
                if standby is not None and _promote(standby, index):
                    procs[index], standby = standby, None
                    standby_due = time.monotonic() + STANDBY_RESPAWN_DELAY_S
                else:
                    procs[index] = subprocess.Popen(
                        [*base, "--worker-index", str(index), *(["--replacing"] if proc is not None else [])], env=env)
        if standby is not None and standby.poll() is not None:
            log.warning("the standby worker exited with %s", standby.returncode)
            standby, standby_due = None, time.monotonic() + STANDBY_RESPAWN_DELAY_S
        if standby is None and time.monotonic() >= standby_due:
            standby = subprocess.Popen([*base, "--standby"], stdin=subprocess.PIPE, env=env)
        _wait_for_an_exit([p for p in [*procs.values(), standby] if p and p.returncode is None], timeout=0.5)
    if standby is not None:
        with contextlib.suppress(OSError):
            standby.stdin.close()  # end of file: the standby leaves without serving
    everyone = [*procs.values(), *([standby] if standby else [])]
    for proc in everyone:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in everyone:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


def _exit_with_supervisor() -> None:
    """Have the kernel send this worker SIGTERM when its supervisor dies, however it dies (Linux). An orphaned
    worker would keep serving the agents' port, and the collector started in the supervisor's place would refuse
    that port as in use. systemd's cgroup kill covers this too, but not every service manager has one."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.environ.get(SUPERVISOR_PID_ENV) not in (None, str(os.getppid())):
        sys.exit(0)  # the supervisor died before the request above was in place


def _promote(standby: subprocess.Popen, index: int) -> bool:
    """Tell the standby to serve as worker `index`. False if it is gone (the caller starts a worker from cold)."""
    if standby.poll() is not None:
        return False
    try:
        standby.stdin.write(f"{index}\n".encode())
        standby.stdin.flush()
    except OSError:
        return False
    return True


def _wait_for_an_exit(procs: list[subprocess.Popen], timeout: float) -> None:
    """Sleep up to `timeout`, waking the moment any of `procs` exits (Linux pidfds): the standby must be promoted
    within milliseconds of a death, not at the next half-second poll."""
    fds = []
    try:
        for proc in procs:
            with contextlib.suppress(OSError, AttributeError):  # gone already, or no pidfd_open on this system
                fds.append(os.pidfd_open(proc.pid))
        if fds:
            select.select(fds, [], [], timeout)
        else:
            time.sleep(timeout)
    finally:
        for fd in fds:
            os.close(fd)
