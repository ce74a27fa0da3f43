"""`status` and `send-test-alert`: what a technician runs at a PC to see that it works."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import grpc

from agent.alerts import Signer, make_test_alert
from agent.channel import describe_rpc_error
from agent.errors import AgentError
from agent.spool import Spool, SpoolFull
from agent.state import AgentState
from agent.uplink import Backoff, Uplink


def _service_status(state: AgentState) -> dict:
    try:
        status = json.loads(state.status_path.read_text())
    except (OSError, ValueError):
        return {"running": False}
    try:
        os.kill(int(status.get("pid", 0)), 0)
        status["running"] = True
    except (OSError, ValueError):
        status["running"] = False
    return status


def cmd_status(args: argparse.Namespace) -> int:
    state = AgentState(args.state)
    config = state.config()
    spool = Spool(state.spool_path)
    try:
        info = {"agent_id": config["agent_id"], "site": config.get("site"), "age_band": config.get("age_band"),
                "collector": config["address"], "spool_depth": spool.depth(), "last_seq": spool.last_seq(),
                "rejected": len(spool.rejected()), "service": _service_status(state)}
    finally:
        spool.close()
    if args.json:
        print(json.dumps(info))
        return 0
    svc = info["service"]
    last = svc.get("last_contact")
    print(f"agent      {info['agent_id']}  (site {info['site']!r}, age band {info['age_band']})")
    print(f"collector  {info['collector']}")
    print(f"service    {'running' if svc.get('running') else 'not running'}"
          + (f", last contact {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(last))}" if last else "")
          + (f", last error: {svc['last_error']}" if svc.get("last_error") else ""))
    print(f"spool      {info['spool_depth']} waiting, {info['rejected']} rejected, last seq {info['last_seq']}")
    return 0


async def _deliver(state: AgentState, spool: Spool, seq: int, timeout: float) -> tuple[str | None, str]:
    """Try to deliver one spooled alert until acked or the deadline. Returns (alert id or None, last error)."""
    deadline = time.monotonic() + timeout
    backoff = Backoff(base=0.5, cap=2.0)
    uplink = Uplink(state)
    last_error = "no answer"
    try:
        while time.monotonic() < deadline:
            if seq not in spool.pending_seqs():
                return "(delivered by the running agent service)", ""
            try:
                request_result = await _send_one(uplink, spool, seq)
            except grpc.RpcError as exc:
                last_error = describe_rpc_error(exc, uplink.address)
            else:
                if request_result is not None:
                    return request_result
            await asyncio.sleep(min(backoff.next_delay(), max(0.0, deadline - time.monotonic())))
        return None, last_error
    finally:
        await uplink.close()


async def _send_one(uplink: Uplink, spool: Spool, seq: int):
    from protos import wardwatch_pb2 as pb

    leased = [item for item in spool.lease(max_items=1000) if item.seq == seq]
    others = [s for s in spool.pending_seqs() if s != seq]
    spool.release(others)  # only our test alert; the backlog is the service's job
    if not leased:
        return None
    request = pb.UploadBatchRequest()
    request.alerts.add().ParseFromString(leased[0].envelope)
    try:
        response = await uplink.stub.UploadBatch(request, timeout=5)
    except grpc.RpcError:
        spool.release([seq])
        raise
    from agent.uplink import settle

    settle(spool, [seq], response)
    ack = response.acks[0] if response.acks else None
    if ack is None:
        return None
    if ack.status in (pb.AlertAck.STATUS_STORED, pb.AlertAck.STATUS_DUPLICATE):
        return ack.alert_id, ""
    if ack.status == pb.AlertAck.STATUS_REJECTED:
        raise AgentError(f"the collector rejected the test alert: {ack.reason}")
    return None


def cmd_send_test_alert(args: argparse.Namespace) -> int:
    state = AgentState(args.state)
    config = state.config()
    signer = Signer(key=state.identity_key(), agent_id=config["agent_id"], age_band=config.get("age_band", ""))
    alert = make_test_alert(args.category, args.severity, args.text)
    spool = Spool(state.spool_path)
    try:
        try:
            seq = spool.enqueue(alert.severity, lambda s: signer.envelope(alert, s))
        except SpoolFull as exc:
            raise AgentError(f"cannot queue the test alert: {exc}") from exc
        alert_id, error = asyncio.run(_deliver(state, spool, seq, args.timeout))
    finally:
        spool.close()
    if alert_id is None:
        print(f"test alert seq {seq} NOT acknowledged within {args.timeout:g}s: {error}. "
              "It stays in the spool and the agent service will deliver it.")
        return 1
    print(f"test alert acknowledged: id {alert_id}, seq {seq}")
    return 0
