"""The agent's side of the wire: upload batches from the spool, heartbeats, bundles, commands."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field

import grpc

from agent.channel import secure_channel
from agent.spool import Spool
from agent.state import AgentState
from protos import wardwatch_pb2 as pb
from protos import wardwatch_pb2_grpc as pb_grpc

log = logging.getLogger("wardwatch.uplink")
UPLOAD_TIMEOUT_S = 30


@dataclass
class Backoff:
    """Exponential backoff with full jitter, so a room of PCs does not reconnect in lockstep."""

    base: float = 1.0
    cap: float = 60.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        delay = self.rng.uniform(0, min(self.cap, self.base * (2 ** self.attempt)))
        self.attempt = min(self.attempt + 1, 30)
        return delay

    def reset(self) -> None:
        self.attempt = 0


# A command stream that stayed open this long was established: when it ends, the collector ended it (its replica
# died or recycled the connection), not a failed attempt to connect.
STREAM_ESTABLISHED_S = 5.0


def upload_backoff() -> Backoff:
    """Retries of an upload. The first comes within a quarter second: when a replica dies, the alerts it held
    unacked are resent at once through another, so a failover costs an alert well under a second. A collector
    that stays away is retried ever more slowly (the attempts are cheap refused connections)."""
    return Backoff(base=0.25)


def command_backoff() -> Backoff:
    """Retries of a command stream that failed to open."""
    return Backoff(base=2.0)


# When the agent replaces its connection (a new certificate, a re-key), calls in flight on the old one get this long
# to finish there: an upload's answer is its ack, and cutting it off would send the batch again.
RECONNECT_GRACE_S = 10.0


def cancelled_by_closed_channel() -> bool:
    """Whether the CancelledError just caught ended a gRPC call because this agent closed the call's channel
    (grpc.aio ends such calls that way, after a reconnect) rather than because the running task was cancelled,
    which is the agent stopping. A loop that let the first kind through died, and its work with it."""
    task = asyncio.current_task()
    return task is not None and not task.cancelling()


def stream_reopen_delay(lasted_s: float, backoff: Backoff, spread_s: float, replaced: bool = False) -> float:
    """Seconds to wait before reopening the command stream after it ended, having lasted `lasted_s`.

    When a replica dies, every agent it held sees its stream end in the same instant. Reopening them all within a
    couple of seconds is a storm of TLS handshakes on the surviving replicas, and the alerts they carry wait behind
    it: measured at 10,000 agents, 5,000 reconnecting within 3 s held uploads back for 25 s. So an established
    stream is reopened at a random moment within `spread_s` (the heartbeat interval, which the collector sizes
    its fleet for: the returning agents then cost what their heartbeats cost). Alerts do not wait for this: an
    upload reconnects the channel by itself. A stream that failed to open backs off exponentially instead. A
    stream this agent ended itself, because it `replaced` its connection, is reopened at once on the new one."""
    if replaced:
        backoff.reset()
        return 0.0
    if lasted_s >= STREAM_ESTABLISHED_S:
        backoff.reset()
        return backoff.rng.uniform(0.0, max(0.0, spread_s))
    return backoff.next_delay()


@dataclass(frozen=True)
class DrainResult:
    sent: int
    stored: int
    duplicate: int
    rejected: int
    retry: int


class Uplink:
    def __init__(self, state: AgentState):
        config = state.config()
        self.address = config["address"]
        ca, key, cert = state.credentials()
        self.channel = secure_channel(self.address, ca, key, cert)
        self.stub = pb_grpc.AgentGatewayStub(self.channel)

    async def close(self, grace: float | None = None) -> None:
        """Close the connection; with `grace`, calls in flight get that long to finish first."""
        await self.channel.close(grace)

    async def send_batch(self, spool: Spool, max_items: int = 200, only: set[int] | None = None) -> DrainResult:
        """Lease one batch, upload it, and settle every item by its ack. Raises grpc.RpcError on failure
        (after releasing the lease so the batch goes out again)."""
        leased = spool.lease(max_items=max_items)
        if only is not None:
            skip = [item.seq for item in leased if item.seq not in only]
            if skip:
                spool.release(skip)
            leased = [item for item in leased if item.seq in only]
        if not leased:
            return DrainResult(0, 0, 0, 0, 0)
        request = pb.UploadBatchRequest()
        for item in leased:
            request.alerts.add().ParseFromString(item.envelope)
        try:
            response = await self.stub.UploadBatch(request, timeout=UPLOAD_TIMEOUT_S)
        except (grpc.RpcError, asyncio.CancelledError):
            spool.release([item.seq for item in leased])
            raise
        return settle(spool, [item.seq for item in leased], response)

    async def heartbeat(self, request: pb.HeartbeatRequest) -> pb.HeartbeatResponse:
        return await self.stub.Heartbeat(request, timeout=15)

    async def fetch_bundle(self, have_version: str) -> pb.FetchBundleResponse:
        return await self.stub.FetchBundle(pb.FetchBundleRequest(have_version=have_version), timeout=60)


def settle(spool: Spool, seqs: list[int], response: pb.UploadBatchResponse) -> DrainResult:
    """Apply the collector's per-item acks to the spool. An item with no ack goes out again."""
    acked, retry = [], []
    stored = duplicate = rejected = 0
    answered: set[int] = set()
    for ack in response.acks:
        if not 0 <= ack.index < len(seqs):
            continue
        seq = seqs[ack.index]
        answered.add(ack.index)
        if ack.status == pb.AlertAck.STATUS_STORED:
            acked.append(seq)
            stored += 1
        elif ack.status == pb.AlertAck.STATUS_DUPLICATE:
            acked.append(seq)
            duplicate += 1
        elif ack.status == pb.AlertAck.STATUS_REJECTED:
            log.warning("collector rejected alert seq %d: %s", seq, ack.reason)
            spool.reject(seq, ack.reason)
            rejected += 1
        else:
            retry.append(seq)
    retry.extend(seq for i, seq in enumerate(seqs) if i not in answered)
    spool.ack(acked)
    if retry:
        spool.release(retry)
    return DrainResult(len(seqs), stored, duplicate, rejected, len(retry))
