"""The agent's side of the wire: upload batches from the spool, heartbeats, bundles, commands."""

from __future__ import annotations

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

    async def close(self) -> None:
        await self.channel.close()

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
        except grpc.RpcError:
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
