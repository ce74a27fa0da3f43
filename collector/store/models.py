"""The collector's tables. Schema changes go through Alembic migrations in collector/store/migrations/."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import JSON

from collector.protect.types import EncryptedBytes, EncryptedJSON, EncryptedText


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict] = {dt.datetime: DateTime(timezone=True)}


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # primary | secondary | staff: the default age band for devices enrolled into this site.
    default_age_band: Mapped[str] = mapped_column(String(16), default="secondary")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class EnrolmentToken(Base):
    __tablename__ = "enrolment_tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # short public id, safe to print and log
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the secret; the secret is not kept
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    age_band: Mapped[str] = mapped_column(String(16), default="secondary")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    uses_allowed: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Set on a one-time re-key token: only the holder of this agent's identity key may redeem it.
    rekey_of: Mapped[str | None] = mapped_column(String(32), default=None)

    site: Mapped[Site] = relationship()


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # sha256(identity SPKI)[:32]
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    identity_public_key: Mapped[bytes] = mapped_column(LargeBinary)  # Ed25519 SPKI DER
    cert_serial: Mapped[str] = mapped_column(String(64))
    cert_not_after: Mapped[dt.datetime]
    hostname: Mapped[str] = mapped_column(String(255), default="")
    os: Mapped[str] = mapped_column(String(64), default="")
    os_version: Mapped[str] = mapped_column(String(255), default="")
    agent_version: Mapped[str] = mapped_column(String(32), default="")
    bundle_version: Mapped[str] = mapped_column(String(64), default="")
    age_band: Mapped[str] = mapped_column(String(16), default="secondary")
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | revoked | removed
    enrolled_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    enrolled_with_token: Mapped[str | None] = mapped_column(String(16), default=None)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_instance_id: Mapped[str] = mapped_column(String(64), default="")
    clock_skew_s: Mapped[float | None] = mapped_column(Float, default=None)
    coverage_gaps: Mapped[list] = mapped_column(JSON, default=list)
    spool_depth: Mapped[int] = mapped_column(BigInteger, default=0)
    # Fleet operations: {instance_id: last heartbeat ISO time} for clone detection; set when two live processes
    # were seen presenting this identity; the identity this one replaced after a re-key; when it was uninstalled.
    recent_instances: Mapped[dict | None] = mapped_column(JSON, default=dict)
    clone_detected_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    rekeyed_from: Mapped[str | None] = mapped_column(String(32), default=None)
    removed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # First 16 hex of the SHA-256 of the CA that issued the current certificate: shows a CA rotation's progress.
    cert_ca: Mapped[str | None] = mapped_column(String(16), default=None)

    site: Mapped[Site] = relationship()


class Alert(Base):
    """One signed alert from one agent. `payload` and `signature` are the evidence, kept byte for byte."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("agent_id", "seq", name="uq_alerts_agent_seq"),
        Index("ix_alerts_queue", "state", "severity", "received_at"),
        Index("ix_alerts_user", "user_name"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    kind: Mapped[str] = mapped_column(String(16))  # keyword | usb | coverage | test | dropped | notice
    category: Mapped[str] = mapped_column(String(32), default="")
    severity: Mapped[int] = mapped_column(Integer, default=0)
    rule: Mapped[str] = mapped_column(String(128), default="")
    confidence: Mapped[float] = mapped_column(Float, default=1.0)
    source: Mapped[str] = mapped_column(String(16), default="")  # typed | deleted | title
    hostname: Mapped[str] = mapped_column(String(255), default="")
    user_name: Mapped[str] = mapped_column(String(255), default="")
    age_band: Mapped[str] = mapped_column(String(16), default="")
    # Alert content: what a DSL reviews. Never logged; encrypted at rest, each value bound to this row.
    matched: Mapped[str] = mapped_column(EncryptedText("alerts.matched"), default="")
    context: Mapped[str] = mapped_column(EncryptedText("alerts.context"), default="")
    window_title: Mapped[str] = mapped_column(EncryptedText("alerts.window_title"), default="")
    application: Mapped[str] = mapped_column(EncryptedText("alerts.application"), default="")
    # usb / coverage / dropped details: device serials and names can identify a person, so sealed as well.
    details: Mapped[dict] = mapped_column(EncryptedJSON("alerts.details"), default=dict)
    bundle_version: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime]  # as stated by the agent (signed)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(24), default="new")
    # Bumped by every review step; a decision is written only WHERE version = the version the reviewer saw.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The signed evidence holds the same content as the columns above, so it is sealed too; the signature is
    # checked over the decrypted bytes, which are the agent's bytes exactly.
    payload: Mapped[bytes] = mapped_column(EncryptedBytes("alerts.payload"))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    signature_ok: Mapped[bool] = mapped_column(Boolean, default=True)

    agent: Mapped[Agent] = relationship()


class Bundle(Base):
    """A published, signed keyword bundle. site_id NULL = the trust-wide default."""

    __tablename__ = "bundles"
    __table_args__ = (UniqueConstraint("version", name="uq_bundles_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), default=None)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    published_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_by: Mapped[str] = mapped_column(String(255), default="")


class AgentCommand(Base):
    """A command queued for one agent, delivered over its Commands stream and acknowledged by it."""

    __tablename__ = "agent_commands"
    __table_args__ = (Index("ix_agent_commands_pending", "agent_id", "acked_at"),
                      Index("ix_agent_commands_undelivered", "delivered_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"))
    kind: Mapped[str] = mapped_column(String(32))  # update_bundle | rekey | renew_now | ping | set_policy | uninstall
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    acked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    ok: Mapped[bool | None] = mapped_column(Boolean, default=None)
    detail: Mapped[str] = mapped_column(Text, default="")


class FleetSetting(Base):
    """Collector-wide fleet settings that agents depend on, e.g. the hashed uninstall code (never the code)."""

    __tablename__ = "fleet_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SiteRule(Base):
    """A school's own keyword rule, in the TOML schema's fields; validated by signatures.schema before it is kept."""

    __tablename__ = "site_rules"
    __table_args__ = (UniqueConstraint("site_id", "rule_id", name="uq_site_rules_site_rule"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    rule_id: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(String(32))
    definition: Mapped[dict] = mapped_column(JSON)  # the rule as a TOML-shaped dict (signatures.schema.rule_to_dict)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SiteAllow(Base):
    """A school's own allow-list entry: phrases that cancel any overlapping hit on that site's devices."""

    __tablename__ = "site_allows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    phrases: Mapped[list] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DeviceGroup(Base):
    """A named set of a site's devices (agents), e.g. "History room", for exemptions."""

    __tablename__ = "device_groups"
    __table_args__ = (UniqueConstraint("site_id", "name", name="uq_device_groups_site_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    name: Mapped[str] = mapped_column(String(100))
    agent_ids: Mapped[list] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class KeywordExemption(Base):
    """A time-boxed exemption: requested by one DSL, approved by a different one, enforced by the agents."""

    __tablename__ = "keyword_exemptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    categories: Mapped[list] = mapped_column(JSON, default=list)
    rules: Mapped[list] = mapped_column(JSON, default=list)
    agent_ids: Mapped[list] = mapped_column(JSON, default=list)
    group_ids: Mapped[list] = mapped_column(JSON, default=list)
    starts_at: Mapped[dt.datetime] = mapped_column()
    ends_at: Mapped[dt.datetime] = mapped_column()
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(255))
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    approved_by: Mapped[str | None] = mapped_column(String(255), default=None)
    approved_at: Mapped[dt.datetime | None] = mapped_column(default=None)
