"""The gRPC gateway agents talk to (grpc.aio). Identity comes from the mTLS peer certificate, never the payload."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_der_public_key
from nacl.signing import VerifyKey
from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from collector import audit, fleet
from collector.ingest import (
    MAX_BATCH_ITEMS,
    Rejected,
    identity_verifier,
    new_alert_ids,
    row_values,
    verify_envelope,
)
from collector.pki import CollectorPki, CsrError, cert_pem, check_csr, issue_agent_certificate
from collector.store.alerts import AlertWriter
from collector.store.group_commit import GroupCommitter
from collector.store.models import Agent, AgentCommand, Bundle, EnrolmentToken
from collector.tokens import TokenRefused, redeem_token
from protos import wardwatch_pb2 as pb
from protos import wardwatch_pb2_grpc as pb_grpc
from protos.identity import agent_id_of, identity_key_from_certificate

log = logging.getLogger("wardwatch.gateway")
_STALE = object()  # no fresh entry in the peer cache
# One query per process every few seconds finds commands queued by any replica or the console; per-agent polling
# would cost 10,000 queries every interval on a large fleet.
COMMAND_POLL_S = 3.0
HEARTBEAT_INTERVAL_S = 60
# How long a replica trusts what it read about an agent (status, key, site). Revocation takes effect within this.
PEER_CACHE_S = 10.0
# A new bundle is announced to every agent within this long of its publication.
BUNDLE_VERSION_CACHE_S = 5.0
CERT_CACHE_SIZE = 50_000
# Batches of up to this many alerts are verified on the event loop (~0.1-0.2 ms each): most uploads carry one alert,
# and the thread hop (a futex wake, the GIL handed over and back, a loop wake-up) cost more than verifying it.
VERIFY_INLINE_MAX = 4


_AGENTS = Agent.__table__
_PEER_COLUMNS = (_AGENTS.c.status, _AGENTS.c.site_id, _AGENTS.c.identity_public_key)
_PEER_SELECT = select(*_PEER_COLUMNS).where(_AGENTS.c.id == bindparam("agent_id"))
# A heartbeat reads what the peer cache holds too, in the same locked read: most heartbeats come more than
# PEER_CACHE_S after the agent's last call, and a separate look-up cost a second checkout and round trip each.
# Locked: two replicas hearing two clones at once must see each other's instance.
# Locked in id order, FOR NO KEY UPDATE: two replicas' groups take their locks in one order, and an alert's
# foreign-key check (FOR KEY SHARE) on the same agent does not wait for the heartbeat, nor the heartbeat for it.
_HEARTBEAT_SELECT = (select(_AGENTS.c.id, *_PEER_COLUMNS, _AGENTS.c.recent_instances, _AGENTS.c.last_instance_id,
                            _AGENTS.c.clone_detected_at)
                     .where(_AGENTS.c.id.in_(bindparam("ids", expanding=True))).order_by(_AGENTS.c.id)
                     .with_for_update(key_share=True))
# Heartbeats wait up to this long to be recorded together when they arrive faster than one per half of it
# (collector/store/group_commit.py). Nobody waits on a heartbeat's answer; 10,000 agents send ~170 a second.
HEARTBEAT_GATHER_S = 0.2
HEARTBEAT_GROUP_MAX = 500
# Built once; the columns to set come from the parameters (SQLAlchemy caches one compiled form per set of keys).
_HEARTBEAT_UPDATE = update(_AGENTS).where(_AGENTS.c.id == bindparam("agent_id_"))
_CLONE_GAP = {"gap": fleet.CLONED_IDENTITY,
              "detail": "two live devices present this identity; each has been told to re-key"}


@dataclass(frozen=True)
class PeerAgent:
    agent_id: str
    site_id: int
    public_key: ed25519.Ed25519PublicKey
    public_key_der: bytes
    verifier: VerifyKey  # the same key, for verifying alerts with libsodium


def _peer_from_row(agent_id: str, row, cached: PeerAgent | str | None) -> PeerAgent | str | None:
    """The agent as a PeerAgent, its status word if it may not connect, or None if unknown. Reuses the cached
    PeerAgent (and its parsed key) when nothing in the row changed."""
    if row is None:
        return None
    if row.status != "active":
        return row.status
    if (isinstance(cached, PeerAgent) and cached.site_id == row.site_id
            and cached.public_key_der == row.identity_public_key):
        return cached
    public_key = load_der_public_key(row.identity_public_key)
    return PeerAgent(agent_id=agent_id, site_id=row.site_id, public_key=public_key,
                     public_key_der=bytes(row.identity_public_key), verifier=identity_verifier(public_key))


def _distinct_agents(items: list[tuple[str, pb.HeartbeatRequest, dt.datetime]]) -> int:
    """How many of the waiting heartbeats form the next group: up to the first repeat of an agent. Two heartbeats
    of one identity (a cloned image) must be recorded one after the other, each seeing the other's instance."""
    seen: set[str] = set()
    for n, (agent_id, *_) in enumerate(items):
        if agent_id in seen or n == HEARTBEAT_GROUP_MAX:
            return n
        seen.add(agent_id)
    return len(items)


def _heartbeat_news(agent_id: str, request: pb.HeartbeatRequest, now: dt.datetime) -> dict:
    """The agent row's columns a heartbeat sets (parameters of _HEARTBEAT_UPDATE), before the clone check."""
    values = {
        "agent_id_": agent_id,
        "last_seen_at": now,
        "bundle_version": request.bundle_version[:64],
        "coverage_gaps": [{"gap": g.gap, "detail": g.detail[:500]} for g in request.gaps],
        "spool_depth": request.spool_depth,
        "last_instance_id": request.instance_id[:64],
    }
    if request.HasField("clock"):
        values["clock_skew_s"] = (request.clock.ToDatetime(tzinfo=dt.UTC) - now).total_seconds()
    if request.host.agent_version:
        values["agent_version"] = request.host.agent_version[:32]
    if request.host.hostname:
        values["hostname"] = request.host.hostname[:255]
    return values


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class AgentGateway(pb_grpc.AgentGatewayServicer):
    def __init__(self, engine: Engine, pki: CollectorPki):
        self.engine = engine
        self.sessions: sessionmaker[Session] = sessionmaker(engine, expire_on_commit=False)
        self.pki = pki
        self._writer = AlertWriter(self.sessions)
        self._heartbeat_writer: GroupCommitter[tuple[str, pb.HeartbeatRequest, dt.datetime]] = GroupCommitter(
            self._heartbeats, "heartbeat-writer", take=_distinct_agents, gather_s=HEARTBEAT_GATHER_S)
        self._command_events: dict[str, asyncio.Event] = {}
        self._peers: dict[str, tuple[float, PeerAgent | str]] = {}
        # Certificate (as the TLS layer verified it) -> the agent id it names: parsing it cost more per call than
        # the rest of a heartbeat. Status and keys are still re-read every PEER_CACHE_S.
        self._cert_ids: dict[bytes, str] = {}
        self._bundle_versions: dict[int, tuple[float, str]] = {}
        self._command_poller: asyncio.Task | None = None
        self._pending_agents: set[str] | None = None  # agents the last command poll found commands for
        self._trust_hash: tuple[bytes, str] | None = None
        self.policy = fleet.load_fleet_policy(pki.paths.root.parent)

    async def _db(self, context: grpc.aio.ServicerContext, fn, *args):
        """Run blocking database work off the event loop."""
        return await self._awaiting_db(context, asyncio.to_thread(fn, *args), getattr(fn, "__name__", "call"))

    @staticmethod
    async def _awaiting_db(context: grpc.aio.ServicerContext, work: Awaitable, what: str):
        """The result of database work. A database failure becomes a retryable UNAVAILABLE naming only the
        exception class: statements carry alert content, which never goes into logs or errors."""
        try:
            return await work
        except SQLAlchemyError as exc:
            log.error("database error in %s: %s", what, type(exc).__name__)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the collector's database is unavailable; retry later")

    # ------------------------------------------------------------------ identity

    async def _peer(self, context: grpc.aio.ServicerContext) -> PeerAgent:
        agent_id = await self._agent_id(context)
        peer = self._fresh_peer(agent_id)
        if peer is _STALE:
            peer = await self._db(context, self._load_peer, agent_id)
        return await self._admit(context, agent_id, peer)

    async def _agent_id(self, context: grpc.aio.ServicerContext) -> str:
        """The agent id named by the client certificate the TLS layer verified."""
        pem = context.auth_context().get("x509_pem_cert")
        if not pem:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "this call needs the agent's client certificate (use the mTLS port)")
        agent_id = self._cert_ids.get(pem[0])
        if agent_id is None:
            try:
                cert = x509.load_pem_x509_certificate(pem[0])
                identity = identity_key_from_certificate(cert)
            except ValueError:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "client certificate carries no agent identity")
            agent_id = agent_id_of(identity)
            if len(self._cert_ids) >= CERT_CACHE_SIZE:
                self._cert_ids.clear()
            self._cert_ids[pem[0]] = agent_id
        return agent_id

    def _fresh_peer(self, agent_id: str):
        """What this replica read about the agent less than PEER_CACHE_S ago, or _STALE."""
        cached = self._peers.get(agent_id)
        if cached is None or time.monotonic() - cached[0] > PEER_CACHE_S:
            return _STALE
        return cached[1]

    def _refresh_peer(self, agent_id: str, row) -> PeerAgent | str | None:
        """The agent as `row` shows it, remembered for PEER_CACHE_S (keeping the parsed key if it is unchanged)."""
        cached = self._peers.get(agent_id)
        peer = _peer_from_row(agent_id, row, cached[1] if cached else None)
        self._peers[agent_id] = (time.monotonic(), peer)
        return peer

    @staticmethod
    async def _admit(context: grpc.aio.ServicerContext, agent_id: str, peer: PeerAgent | str | None) -> PeerAgent:
        if peer is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"unknown agent {agent_id}: enrol this device")
        if isinstance(peer, str):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"agent {agent_id} is {peer}: its certificate is no longer accepted")
        return peer

    def _load_peer(self, agent_id: str) -> PeerAgent | str | None:
        """Three columns through Core, remembered for PEER_CACHE_S."""
        with self.engine.connect() as conn:
            row = conn.execute(_PEER_SELECT, {"agent_id": agent_id}).one_or_none()
        return self._refresh_peer(agent_id, row)

    # ------------------------------------------------------------------ enrolment

    async def Enroll(self, request: pb.EnrollRequest, context: grpc.aio.ServicerContext) -> pb.EnrollResponse:
        try:
            csr = check_csr(request.csr_pem)
            identity = load_der_public_key(request.identity_public_key)
            if not isinstance(identity, ed25519.Ed25519PublicKey):
                raise CsrError("the identity key must be Ed25519")
            identity.verify(request.identity_proof, request.csr_pem)
        except (CsrError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except InvalidSignature:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "identity proof does not verify: the request was not made by that key")
        try:
            agent_id, site, band, cert = await self._db(context, self._enrol, request, csr, identity)
        except TokenRefused as exc:
            code = grpc.StatusCode.UNAUTHENTICATED if "unknown" in str(exc) else grpc.StatusCode.PERMISSION_DENIED
            await context.abort(code, str(exc))
        log.info("enrolled agent %s (%s) into site %s", agent_id, request.host.hostname[:64], site)
        return pb.EnrollResponse(agent_id=agent_id, certificate_pem=cert_pem(cert), ca_chain_pem=self.pki.ca_cert_pem,
                                 site=site, bundle_public_key=self.pki.bundle_public_key_der(), age_band=band)

    def _enrol(self, request: pb.EnrollRequest, csr, identity: ed25519.Ed25519PublicKey):
        agent_id = agent_id_of(identity)
        with audit.write_session(self.engine) as s:
            token = redeem_token(s, request.token)
            replaces = self._check_rekey(s, token.token_id, request)
            cert = issue_agent_certificate(self.pki.issuer_key, self.pki.issuer_cert, csr, identity, token.site.name,
                                           lifetime=self.policy.agent_cert_lifetime)
            row = s.get(Agent, agent_id) or Agent(id=agent_id, identity_public_key=request.identity_public_key)
            if replaces is not None:
                row.rekeyed_from = replaces.id
                fleet.finish_rekey(s, replaces, agent_id, dt.datetime.now(dt.UTC))
                self._peers.pop(replaces.id, None)
            row.site_id = token.site.id
            row.cert_serial = format(cert.serial_number, "x")
            row.cert_not_after = cert.not_valid_after_utc
            row.cert_ca = self.pki.issuer_id
            row.hostname = request.host.hostname[:255]
            row.os = request.host.os[:64]
            row.os_version = request.host.os_version[:255]
            row.agent_version = request.host.agent_version[:32]
            row.age_band = token.age_band
            row.status = "active"
            row.enrolled_with_token = token.token_id
            self._peers.pop(agent_id, None)
            s.add(row)
            _audit(s, "agent.enrol", agent_id, {"site": token.site.name, "token": token.token_id,
                                                "hostname": row.hostname})
            return agent_id, token.site.name, token.age_band, cert

    @staticmethod
    def _check_rekey(s: Session, token_id: str, request: pb.EnrollRequest) -> Agent | None:
        """For a re-key token: the agent it replaces, after checking the request is signed by that agent's key."""
        rekey_of = s.get(EnrolmentToken, token_id).rekey_of
        if rekey_of is None:
            return None
        # Locked so that the clones' re-keys, which commit at nearly the same moment, are decided one after the
        # other: the last one sees every other token spent and retires the shared identity.
        old = s.scalars(select(Agent).where(Agent.id == rekey_of).with_for_update()).one_or_none()
        try:
            load_der_public_key(old.identity_public_key).verify(request.previous_identity_proof, request.csr_pem)
        except (InvalidSignature, AttributeError) as exc:
            raise TokenRefused("this re-key token belongs to another device's identity") from exc
        return old

    async def RenewCertificate(self, request: pb.RenewRequest, context) -> pb.RenewResponse:
        peer = await self._peer(context)
        try:
            csr = check_csr(request.csr_pem)
            peer.public_key.verify(request.identity_proof, request.csr_pem)
        except CsrError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except InvalidSignature:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "identity proof does not verify")

        def renew():
            with self.sessions.begin() as s:
                row = s.get(Agent, peer.agent_id)
                cert = issue_agent_certificate(self.pki.issuer_key, self.pki.issuer_cert, csr, peer.public_key,
                                               row.site.name, lifetime=self.policy.agent_cert_lifetime)
                row.cert_serial = format(cert.serial_number, "x")
                row.cert_not_after = cert.not_valid_after_utc
                row.cert_ca = self.pki.issuer_id
                return cert

        cert = await self._db(context, renew)
        return pb.RenewResponse(certificate_pem=cert_pem(cert), ca_chain_pem=self.pki.ca_cert_pem)

    # ------------------------------------------------------------------ alerts

    async def UploadBatch(self, request: pb.UploadBatchRequest, context) -> pb.UploadBatchResponse:
        peer = await self._peer(context)
        # A large batch is verified in a thread (Ed25519 verification releases the GIL, so batches verify in
        # parallel); a small one right here, where its few verifications cost less than the hop to a thread and
        # back. Then the process's group-commit writer stores it with whatever other uploads are waiting.
        if len(request.alerts) <= VERIFY_INLINE_MAX:
            acks, rows, row_index = self._verify_batch(peer, request)
        else:
            acks, rows, row_index = await asyncio.to_thread(self._verify_batch, peer, request)
        if rows:
            stored = await self._awaiting_db(
                context, asyncio.wrap_future(self._writer.submit(list(rows.values()))), "storing alerts")
            # Reached only after the commit returned: an ack is a promise the alert is durable.
            for seq, indexes in row_index.items():
                alert_id, new = stored[(peer.agent_id, seq)]
                for n, index in enumerate(indexes):
                    status = pb.AlertAck.STATUS_STORED if new and n == 0 else pb.AlertAck.STATUS_DUPLICATE
                    acks.append((index, seq, status, alert_id, ""))
        acks.sort()
        response = pb.UploadBatchResponse()
        add = response.acks.add
        for index, seq, status, alert_id, reason in acks:
            add(index=index, seq=seq, status=status, alert_id=alert_id, reason=reason)
        return response

    def _verify_batch(self, peer: PeerAgent, request: pb.UploadBatchRequest):
        """Acks for the items refused outright, the rows to store (by seq) and which items carry each seq."""
        acks: list[tuple] = []  # (index, seq, status, alert id, reason), made into messages once at the end
        rows: dict[int, dict] = {}
        row_index: dict[int, list[int]] = {}
        now = dt.datetime.now(dt.UTC)
        envelopes = request.alerts
        ids = new_alert_ids(min(len(envelopes), MAX_BATCH_ITEMS))
        for index, envelope in enumerate(envelopes):
            if index >= MAX_BATCH_ITEMS:
                acks.append((index, 0, pb.AlertAck.STATUS_RETRY, "",
                             f"batch holds more than {MAX_BATCH_ITEMS} items; send the rest again"))
                continue
            try:
                verified = verify_envelope(envelope, peer.agent_id, peer.verifier)
            except Rejected as exc:
                acks.append((index, 0, pb.AlertAck.STATUS_REJECTED, "", str(exc)))
                continue
            seq = verified.alert.seq
            if seq not in rows:
                rows[seq] = row_values(verified, ids[index], peer.site_id, now)
                row_index[seq] = [index]
            else:
                row_index[seq].append(index)
        return acks, rows, row_index

    # ------------------------------------------------------------------ health, bundles, commands

    async def Heartbeat(self, request: pb.HeartbeatRequest, context) -> pb.HeartbeatResponse:
        agent_id = await self._agent_id(context)
        received = dt.datetime.now(dt.UTC)  # the clock skew is measured on arrival, not after the group waited
        peer, latest = await self._awaiting_db(
            context, asyncio.wrap_future(self._heartbeat_writer.submit((agent_id, request, received))), "heartbeat")
        await self._admit(context, agent_id, peer)
        resp = pb.HeartbeatResponse(latest_bundle_version=latest, heartbeat_interval_s=self.policy.heartbeat_interval_s,
                                    trust_bundle_sha256=self._trust_bundle_sha256())
        resp.server_time.GetCurrentTime()
        return resp

    def _trust_bundle_sha256(self) -> str:
        """Hashed once per CA bundle rather than per heartbeat (the bundle changes only during a CA rotation)."""
        pem = self.pki.ca_cert_pem
        if self._trust_hash is None or self._trust_hash[0] is not pem:
            self._trust_hash = (pem, self.pki.trust_bundle_sha256)
        return self._trust_hash[1]

    def _heartbeats(self, items: list[tuple[str, pb.HeartbeatRequest, dt.datetime]]
                    ) -> list[tuple[PeerAgent | str | None, str]]:
        """Record a group of heartbeats (agent, request, arrival time; distinct agents) in one transaction: one
        locked read of their rows, one UPDATE statement per shape of news, one commit. For each: (the agent as
        _load_peer reads it, the bundle version to announce). Through Core: loading and flushing ORM objects cost
        more than the round trips. A heartbeat that reveals a clone takes the ORM path (_track_instance), which
        queues the re-keys. An agent that may not connect is recorded as nothing."""
        window = self.policy.clone_window
        peers: list[PeerAgent | str | None] = []
        updates: dict[frozenset, list[dict]] = {}
        with self.sessions.begin() as s:
            conn = s.connection()
            rows = {row.id: row for row in conn.execute(_HEARTBEAT_SELECT, {"ids": [item[0] for item in items]})}
            for agent_id, request, received in items:
                row = rows.get(agent_id)
                peer = self._refresh_peer(agent_id, row)
                peers.append(peer)
                if not isinstance(peer, PeerAgent):
                    continue
                instance = request.instance_id[:64]
                values = _heartbeat_news(agent_id, request, received)
                recent = dict(row.recent_instances or {})
                if row.clone_detected_at is None and fleet.is_clone(recent, row.last_instance_id, instance,
                                                                    received, window):
                    values["coverage_gaps"] += self._track_instance(s, agent_id, instance, received)
                    s.flush()
                else:
                    values["recent_instances"] = fleet.remember_instance(recent, instance, received, window)
                    if row.clone_detected_at is not None:
                        values["coverage_gaps"].append(_CLONE_GAP)
                updates.setdefault(frozenset(values), []).append(values)
            for params in updates.values():
                conn.execute(_HEARTBEAT_UPDATE, params)
            return [(peer, self._latest_bundle_version(s, peer.site_id)) if isinstance(peer, PeerAgent)
                    else (peer, "") for peer in peers]

    def _latest_bundle_version(self, s: Session, site_id: int) -> str:
        """The version heartbeats announce, without reading the bundle itself, cached briefly per site: every
        heartbeat asks, and 10,000 agents heartbeat ~170 times a second."""
        now = time.monotonic()
        cached = self._bundle_versions.get(site_id)
        if cached is None or now - cached[0] > BUNDLE_VERSION_CACHE_S:
            version = s.scalar(
                select(Bundle.version).where((Bundle.site_id == site_id) | Bundle.site_id.is_(None))
                .order_by(Bundle.published_at.desc(), Bundle.id.desc()).limit(1)) or ""
            cached = (now, version)
            self._bundle_versions[site_id] = cached
        return cached[1]

    def _track_instance(self, s: Session, agent_id: str, instance: str, now: dt.datetime) -> list[dict]:
        """Record which process heartbeated; flag a clone (two live processes, one identity) and queue re-keys.
        Returns the collector-side gaps to show the technician."""
        row = s.scalars(select(Agent).where(Agent.id == agent_id).with_for_update(key_share=True)).one()
        recent = dict(row.recent_instances or {})
        window = self.policy.clone_window
        if row.clone_detected_at is None and fleet.is_clone(recent, row.last_instance_id, instance, now, window):
            live = sorted(set(fleet.remember_instance(recent, instance, now, window)))
            fleet.flag_clone(s, row, live, now)
            log.warning("agent %s: %d live processes present one identity (cloned image); re-key queued",
                        agent_id, len(live))
            _audit(s, "agent.clone-detected", agent_id, {"instances": len(live)})
        row.recent_instances = fleet.remember_instance(recent, instance, now, window)
        if row.clone_detected_at is None:
            return []
        return [dict(_CLONE_GAP)]

    @staticmethod
    def _latest_bundle(s: Session, site_id: int) -> tuple[str | None, Bundle | None]:
        bundle = s.scalar(
            select(Bundle).where((Bundle.site_id == site_id) | Bundle.site_id.is_(None))
            .order_by(Bundle.published_at.desc(), Bundle.id.desc()).limit(1))
        return (bundle.version if bundle else None), bundle

    async def FetchBundle(self, request: pb.FetchBundleRequest, context) -> pb.FetchBundleResponse:
        peer = await self._peer(context)

        def fetch():
            with self.sessions() as s:
                if request.want_version:
                    b = s.scalar(select(Bundle).where(Bundle.version == request.want_version))
                    if b is not None and b.site_id not in (None, peer.site_id):
                        b = None
                    return b
                return self._latest_bundle(s, peer.site_id)[1]

        bundle = await self._db(context, fetch)
        if bundle is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no keyword bundle has been published for this site")
        if bundle.version == request.have_version:
            return pb.FetchBundleResponse(version=bundle.version, not_modified=True)
        return pb.FetchBundleResponse(version=bundle.version, bundle=bundle.content, signature=bundle.signature)

    def notify_command(self, agent_id: str) -> None:
        event = self._command_events.get(agent_id)
        if event is not None:
            event.set()

    async def Commands(self, request: pb.CommandsRequest, context):
        peer = await self._peer(context)
        event = self._command_events.setdefault(peer.agent_id, asyncio.Event())
        # Look at connect only if the last poll saw commands waiting for this agent (or no poll has run yet):
        # anything queued since that poll is found by the next one, which wakes this stream now that it is
        # registered. When a replica dies, thousands of agents reconnect at once; a query each stalled the rest.
        if self._pending_agents is None or peer.agent_id in self._pending_agents:
            event.set()
        if self._command_poller is None or self._command_poller.done():
            self._command_poller = asyncio.create_task(self._poll_commands())
        try:
            while True:
                await event.wait()
                event.clear()
                for command in await self._db(context, self._pending_commands, peer.agent_id,
                                              request.instance_id):
                    yield command
        finally:
            if self._command_events.get(peer.agent_id) is event:
                del self._command_events[peer.agent_id]

    async def _poll_commands(self) -> None:
        """Wake the streams of connected agents that have undelivered commands, with one query per interval."""
        while self._command_events:
            try:
                waiting = await asyncio.to_thread(self._agents_with_pending_commands)
            except SQLAlchemyError as exc:
                log.warning("command poll failed: %s", type(exc).__name__)
                self._pending_agents = None  # unknown: streams that connect now look for themselves
                await asyncio.sleep(COMMAND_POLL_S)
                continue
            self._pending_agents = waiting
            for agent_id in waiting:
                self.notify_command(agent_id)
            await asyncio.sleep(COMMAND_POLL_S)

    def _agents_with_pending_commands(self) -> set[str]:
        with self.sessions() as s:
            return set(s.scalars(select(AgentCommand.agent_id).where(AgentCommand.delivered_at.is_(None))
                                 .distinct()))

    def _pending_commands(self, agent_id: str, instance_id: str = "") -> list[pb.Command]:
        out = []
        with self.sessions.begin() as s:
            rows = s.scalars(select(AgentCommand).where(AgentCommand.agent_id == agent_id,
                                                        AgentCommand.delivered_at.is_(None))
                             .order_by(AgentCommand.created_at)).all()
            for row in rows:
                # A command for one process of a cloned identity goes to that process only.
                if (row.payload or {}).get("instance_id", instance_id) != instance_id:
                    continue
                out.append(command_message(row))
                row.delivered_at = dt.datetime.now(dt.UTC)
                fleet.scrub_delivered_secret(row)
        return out

    async def AckCommand(self, request: pb.CommandResult, context) -> pb.CommandAckResponse:
        peer = await self._peer(context)

        def ack():
            with self.sessions.begin() as s:
                s.execute(update(AgentCommand)
                          .where(AgentCommand.id == request.command_id, AgentCommand.agent_id == peer.agent_id)
                          .values(acked_at=dt.datetime.now(dt.UTC), ok=request.ok, detail=request.detail[:2000]))

        await self._db(context, ack)
        return pb.CommandAckResponse()

    async def Deregister(self, request: pb.DeregisterRequest, context) -> pb.DeregisterResponse:
        peer = await self._peer(context)

        def deregister():
            with self.sessions.begin() as s:
                row = s.get(Agent, peer.agent_id)
                fleet.deregister(s, row, request.uninstall_code, dt.datetime.now(dt.UTC))
                _audit(s, "agent.removed", peer.agent_id, {"hostname": row.hostname})

        try:
            await self._db(context, deregister)
        except fleet.DeregisterRefused as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        self._peers.pop(peer.agent_id, None)
        log.info("agent %s uninstalled and marked removed", peer.agent_id)
        return pb.DeregisterResponse()


def command_message(row: AgentCommand) -> pb.Command:
    cmd = pb.Command(id=row.id)
    payload = row.payload or {}
    if row.kind == "update_bundle":
        cmd.update_bundle.version = payload.get("version", "")
    elif row.kind == "rekey":
        cmd.rekey.reason = payload.get("reason", "")
        cmd.rekey.token = payload.get("token", "")
    elif row.kind == "renew_now":
        cmd.renew_now.SetInParent()
    elif row.kind == "set_policy":
        cmd.set_policy.policy_json = str(payload.get("policy_json", "{}")).encode()
    elif row.kind == "uninstall":
        cmd.uninstall.SetInParent()
    else:
        cmd.ping.SetInParent()
    return cmd


def _audit(session: Session, action: str, target: str, detail: dict) -> None:
    audit.append(session, actor="gateway", action=action, target=target, detail=detail)
