"""gRPC channels to the collector: pinned CA, fixed TLS name, keepalive tuned for classroom networks."""

from __future__ import annotations

import grpc

from protos.identity import COLLECTOR_TLS_NAME

# Keepalive matches the collector's policy (it refuses pings more often than every 20 s): 60 s pings find a dead
# path within ~80 s without waking a sleeping laptop's radio more than needed.
CHANNEL_OPTIONS = [
    ("grpc.ssl_target_name_override", COLLECTOR_TLS_NAME),
    ("grpc.default_authority", COLLECTOR_TLS_NAME),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    # gRPC's own reconnect backoff, bounded so an agent returns within a minute of the collector coming back.
    ("grpc.initial_reconnect_backoff_ms", 1_000),
    ("grpc.max_reconnect_backoff_ms", 60_000),
]


def secure_channel(address: str, ca_pem: bytes, key_pem: bytes | None = None,
                   cert_pem: bytes | None = None) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem)
    return grpc.aio.secure_channel(address, creds, options=CHANNEL_OPTIONS)


def describe_rpc_error(exc: grpc.RpcError, address: str) -> str:
    """One line a technician can act on."""
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"cannot reach the collector at {address} ({details.split(';')[0][:160]})"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the collector at {address} did not answer in time"
    name = code.name if code else "ERROR"
    return f"the collector refused the request ({name}): {details[:300]}"
