import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AlertKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_KIND_UNSPECIFIED: _ClassVar[AlertKind]
    ALERT_KIND_KEYWORD: _ClassVar[AlertKind]
    ALERT_KIND_USB: _ClassVar[AlertKind]
    ALERT_KIND_COVERAGE: _ClassVar[AlertKind]
    ALERT_KIND_TEST: _ClassVar[AlertKind]
    ALERT_KIND_DROPPED: _ClassVar[AlertKind]
    ALERT_KIND_NOTICE: _ClassVar[AlertKind]

class TextSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEXT_SOURCE_UNSPECIFIED: _ClassVar[TextSource]
    TEXT_SOURCE_TYPED: _ClassVar[TextSource]
    TEXT_SOURCE_DELETED: _ClassVar[TextSource]
    TEXT_SOURCE_TITLE: _ClassVar[TextSource]
ALERT_KIND_UNSPECIFIED: AlertKind
ALERT_KIND_KEYWORD: AlertKind
ALERT_KIND_USB: AlertKind
ALERT_KIND_COVERAGE: AlertKind
ALERT_KIND_TEST: AlertKind
ALERT_KIND_DROPPED: AlertKind
ALERT_KIND_NOTICE: AlertKind
TEXT_SOURCE_UNSPECIFIED: TextSource
TEXT_SOURCE_TYPED: TextSource
TEXT_SOURCE_DELETED: TextSource
TEXT_SOURCE_TITLE: TextSource

class EnrollRequest(_message.Message):
    __slots__ = ("token", "csr_pem", "identity_public_key", "identity_proof", "host", "previous_identity_proof")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_PROOF_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_IDENTITY_PROOF_FIELD_NUMBER: _ClassVar[int]
    token: str
    csr_pem: bytes
    identity_public_key: bytes
    identity_proof: bytes
    host: HostInfo
    previous_identity_proof: bytes
    def __init__(self, token: _Optional[str] = ..., csr_pem: _Optional[bytes] = ..., identity_public_key: _Optional[bytes] = ..., identity_proof: _Optional[bytes] = ..., host: _Optional[_Union[HostInfo, _Mapping]] = ..., previous_identity_proof: _Optional[bytes] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("agent_id", "certificate_pem", "ca_chain_pem", "site", "bundle_public_key", "age_band")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    AGE_BAND_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    certificate_pem: bytes
    ca_chain_pem: bytes
    site: str
    bundle_public_key: bytes
    age_band: str
    def __init__(self, agent_id: _Optional[str] = ..., certificate_pem: _Optional[bytes] = ..., ca_chain_pem: _Optional[bytes] = ..., site: _Optional[str] = ..., bundle_public_key: _Optional[bytes] = ..., age_band: _Optional[str] = ...) -> None: ...

class RenewRequest(_message.Message):
    __slots__ = ("csr_pem", "identity_proof")
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_PROOF_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    identity_proof: bytes
    def __init__(self, csr_pem: _Optional[bytes] = ..., identity_proof: _Optional[bytes] = ...) -> None: ...

class RenewResponse(_message.Message):
    __slots__ = ("certificate_pem", "ca_chain_pem")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    ca_chain_pem: bytes
    def __init__(self, certificate_pem: _Optional[bytes] = ..., ca_chain_pem: _Optional[bytes] = ...) -> None: ...

class HostInfo(_message.Message):
    __slots__ = ("hostname", "os", "os_version", "agent_version", "machine_id")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    OS_VERSION_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    os: str
    os_version: str
    agent_version: str
    machine_id: str
    def __init__(self, hostname: _Optional[str] = ..., os: _Optional[str] = ..., os_version: _Optional[str] = ..., agent_version: _Optional[str] = ..., machine_id: _Optional[str] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("agent_id", "seq", "created_at", "hostname", "user", "kind", "category", "severity", "rule", "confidence", "matched", "context", "source", "window_title", "application", "bundle_version", "age_band", "agent_version", "injected", "usb", "coverage", "dropped")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_TITLE_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    AGE_BAND_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    INJECTED_FIELD_NUMBER: _ClassVar[int]
    USB_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    seq: int
    created_at: _timestamp_pb2.Timestamp
    hostname: str
    user: str
    kind: AlertKind
    category: str
    severity: int
    rule: str
    confidence: float
    matched: str
    context: str
    source: TextSource
    window_title: str
    application: str
    bundle_version: str
    age_band: str
    agent_version: str
    injected: bool
    usb: UsbDetails
    coverage: CoverageDetails
    dropped: DroppedDetails
    def __init__(self, agent_id: _Optional[str] = ..., seq: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hostname: _Optional[str] = ..., user: _Optional[str] = ..., kind: _Optional[_Union[AlertKind, str]] = ..., category: _Optional[str] = ..., severity: _Optional[int] = ..., rule: _Optional[str] = ..., confidence: _Optional[float] = ..., matched: _Optional[str] = ..., context: _Optional[str] = ..., source: _Optional[_Union[TextSource, str]] = ..., window_title: _Optional[str] = ..., application: _Optional[str] = ..., bundle_version: _Optional[str] = ..., age_band: _Optional[str] = ..., agent_version: _Optional[str] = ..., injected: _Optional[bool] = ..., usb: _Optional[_Union[UsbDetails, _Mapping]] = ..., coverage: _Optional[_Union[CoverageDetails, _Mapping]] = ..., dropped: _Optional[_Union[DroppedDetails, _Mapping]] = ...) -> None: ...

class UsbDetails(_message.Message):
    __slots__ = ("state", "scheme", "filesystem", "size_bytes", "vendor", "model", "serial", "device", "evidence", "approved", "os_write_policy")
    STATE_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    FILESYSTEM_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    OS_WRITE_POLICY_FIELD_NUMBER: _ClassVar[int]
    state: str
    scheme: str
    filesystem: str
    size_bytes: int
    vendor: str
    model: str
    serial: str
    device: str
    evidence: _containers.RepeatedScalarFieldContainer[str]
    approved: bool
    os_write_policy: str
    def __init__(self, state: _Optional[str] = ..., scheme: _Optional[str] = ..., filesystem: _Optional[str] = ..., size_bytes: _Optional[int] = ..., vendor: _Optional[str] = ..., model: _Optional[str] = ..., serial: _Optional[str] = ..., device: _Optional[str] = ..., evidence: _Optional[_Iterable[str]] = ..., approved: _Optional[bool] = ..., os_write_policy: _Optional[str] = ...) -> None: ...

class CoverageDetails(_message.Message):
    __slots__ = ("gap", "detail")
    GAP_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    gap: str
    detail: str
    def __init__(self, gap: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class DroppedDetails(_message.Message):
    __slots__ = ("count", "first_seq", "last_seq", "max_severity")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    MAX_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    count: int
    first_seq: int
    last_seq: int
    max_severity: int
    def __init__(self, count: _Optional[int] = ..., first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., max_severity: _Optional[int] = ...) -> None: ...

class SignedAlert(_message.Message):
    __slots__ = ("alert", "signature", "agent_id")
    ALERT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    alert: bytes
    signature: bytes
    agent_id: str
    def __init__(self, alert: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., agent_id: _Optional[str] = ...) -> None: ...

class UploadBatchRequest(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[SignedAlert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[SignedAlert, _Mapping]]] = ...) -> None: ...

class AlertAck(_message.Message):
    __slots__ = ("index", "seq", "status", "reason", "alert_id")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[AlertAck.Status]
        STATUS_STORED: _ClassVar[AlertAck.Status]
        STATUS_DUPLICATE: _ClassVar[AlertAck.Status]
        STATUS_REJECTED: _ClassVar[AlertAck.Status]
        STATUS_RETRY: _ClassVar[AlertAck.Status]
    STATUS_UNSPECIFIED: AlertAck.Status
    STATUS_STORED: AlertAck.Status
    STATUS_DUPLICATE: AlertAck.Status
    STATUS_REJECTED: AlertAck.Status
    STATUS_RETRY: AlertAck.Status
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    index: int
    seq: int
    status: AlertAck.Status
    reason: str
    alert_id: str
    def __init__(self, index: _Optional[int] = ..., seq: _Optional[int] = ..., status: _Optional[_Union[AlertAck.Status, str]] = ..., reason: _Optional[str] = ..., alert_id: _Optional[str] = ...) -> None: ...

class UploadBatchResponse(_message.Message):
    __slots__ = ("acks",)
    ACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[AlertAck]
    def __init__(self, acks: _Optional[_Iterable[_Union[AlertAck, _Mapping]]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("clock", "host", "bundle_version", "gaps", "spool_depth", "last_seq", "instance_id", "user", "confirmed_commands")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    GAPS_FIELD_NUMBER: _ClassVar[int]
    SPOOL_DEPTH_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_COMMANDS_FIELD_NUMBER: _ClassVar[int]
    clock: _timestamp_pb2.Timestamp
    host: HostInfo
    bundle_version: str
    gaps: _containers.RepeatedCompositeFieldContainer[CoverageDetails]
    spool_depth: int
    last_seq: int
    instance_id: str
    user: str
    confirmed_commands: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, clock: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., host: _Optional[_Union[HostInfo, _Mapping]] = ..., bundle_version: _Optional[str] = ..., gaps: _Optional[_Iterable[_Union[CoverageDetails, _Mapping]]] = ..., spool_depth: _Optional[int] = ..., last_seq: _Optional[int] = ..., instance_id: _Optional[str] = ..., user: _Optional[str] = ..., confirmed_commands: _Optional[_Iterable[str]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("server_time", "latest_bundle_version", "heartbeat_interval_s", "trust_bundle_sha256")
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    LATEST_BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    TRUST_BUNDLE_SHA256_FIELD_NUMBER: _ClassVar[int]
    server_time: _timestamp_pb2.Timestamp
    latest_bundle_version: str
    heartbeat_interval_s: int
    trust_bundle_sha256: str
    def __init__(self, server_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., latest_bundle_version: _Optional[str] = ..., heartbeat_interval_s: _Optional[int] = ..., trust_bundle_sha256: _Optional[str] = ...) -> None: ...

class FetchBundleRequest(_message.Message):
    __slots__ = ("have_version", "want_version")
    HAVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    WANT_VERSION_FIELD_NUMBER: _ClassVar[int]
    have_version: str
    want_version: str
    def __init__(self, have_version: _Optional[str] = ..., want_version: _Optional[str] = ...) -> None: ...

class FetchBundleResponse(_message.Message):
    __slots__ = ("version", "bundle", "signature", "not_modified")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    NOT_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    version: str
    bundle: bytes
    signature: bytes
    not_modified: bool
    def __init__(self, version: _Optional[str] = ..., bundle: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., not_modified: _Optional[bool] = ...) -> None: ...

class CommandsRequest(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("id", "update_bundle", "rekey", "renew_now", "ping", "set_policy", "uninstall")
    ID_FIELD_NUMBER: _ClassVar[int]
    UPDATE_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    REKEY_FIELD_NUMBER: _ClassVar[int]
    RENEW_NOW_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    SET_POLICY_FIELD_NUMBER: _ClassVar[int]
    UNINSTALL_FIELD_NUMBER: _ClassVar[int]
    id: str
    update_bundle: UpdateBundle
    rekey: Rekey
    renew_now: RenewNow
    ping: Ping
    set_policy: SetPolicy
    uninstall: Uninstall
    def __init__(self, id: _Optional[str] = ..., update_bundle: _Optional[_Union[UpdateBundle, _Mapping]] = ..., rekey: _Optional[_Union[Rekey, _Mapping]] = ..., renew_now: _Optional[_Union[RenewNow, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., set_policy: _Optional[_Union[SetPolicy, _Mapping]] = ..., uninstall: _Optional[_Union[Uninstall, _Mapping]] = ...) -> None: ...

class UpdateBundle(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...

class Rekey(_message.Message):
    __slots__ = ("reason", "token")
    REASON_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    reason: str
    token: str
    def __init__(self, reason: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class RenewNow(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Ping(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetPolicy(_message.Message):
    __slots__ = ("policy_json",)
    POLICY_JSON_FIELD_NUMBER: _ClassVar[int]
    policy_json: bytes
    def __init__(self, policy_json: _Optional[bytes] = ...) -> None: ...

class Uninstall(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("command_id", "ok", "detail")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    ok: bool
    detail: str
    def __init__(self, command_id: _Optional[str] = ..., ok: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class CommandAckResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeregisterRequest(_message.Message):
    __slots__ = ("uninstall_code", "reason")
    UNINSTALL_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    uninstall_code: str
    reason: str
    def __init__(self, uninstall_code: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeregisterResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
