"""Tables of the review console: accounts, the two-person review, paging and the audit log.

Declared on the same `Base` as collector.store.models so that there is one metadata and one migration history.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from collector.protect.types import EncryptedText
from collector.store.models import Base, Site, utcnow


class User(Base):
    """A console account. Passwords are argon2id hashes; TOTP secrets are kept to check codes."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(16))
    # The account name this person types at a school computer: how we know an alert is about them.
    school_login: Mapped[str] = mapped_column(String(255), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    totp_secret: Mapped[str | None] = mapped_column(String(64), default=None)
    # The last TOTP time step accepted, so a code cannot be replayed.
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    setup_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    setup_expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    sites: Mapped[list[Site]] = relationship(secondary="user_sites", lazy="selectin")


class UserSite(Base):
    __tablename__ = "user_sites"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True)


class SiteSafeguarding(Base):
    """Who a site names for allegations against staff, and the chair of governors for allegations about the head."""

    __tablename__ = "site_safeguarding"

    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    allegations_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    chair_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    escalate_after_minutes: Mapped[int] = mapped_column(Integer, default=10)


class WebSession(Base):
    """A console sign-in. Only the SHA-256 of the cookie value is kept."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # password: the password was right and a TOTP code is still due; full: signed in.
    stage: Mapped[str] = mapped_column(String(16))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Review(Base):
    """One step of the two-person review of one alert, in the order they happened."""

    __tablename__ = "reviews"
    __table_args__ = (Index("ix_reviews_alert", "alert_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"))
    step: Mapped[str] = mapped_column(String(16))  # assess | confirm | dispute | decide
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    involved: Mapped[str] = mapped_column(String(24), default="")
    nature: Mapped[str] = mapped_column(String(24), default="")
    outcome: Mapped[str] = mapped_column(String(32), default="")
    # A reviewer's reasons describe the pupil's circumstances: sealed like alert content, bound to the alert.
    reason: Mapped[str] = mapped_column(EncryptedText("reviews.reason", row_key="alert_id"), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    reviewer: Mapped[User] = relationship(lazy="joined")


class CsamReferral(Base):
    """Who was told about suspected child sexual abuse material, and when. The material itself is never shown."""

    __tablename__ = "csam_referrals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"))
    told: Mapped[str] = mapped_column(String(16))  # police | lado | iwf | social-care | other
    reference: Mapped[str] = mapped_column(String(255), default="")  # officer, crime or case reference
    told_at: Mapped[dt.datetime]
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    recorder: Mapped[User] = relationship(lazy="joined")


class OnCall(Base):
    """The ordered imminent-risk paging list of a site."""

    __tablename__ = "on_call"
    __table_args__ = (UniqueConstraint("site_id", "position", name="uq_on_call_position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(255))
    out_of_hours_phone: Mapped[str] = mapped_column(String(64), default="")


class Page(Base):
    """One imminent-risk e-mail to one on-call person, with the hash of its acknowledge token."""

    __tablename__ = "pages"
    __table_args__ = (Index("ix_pages_alert", "alert_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"))
    on_call_id: Mapped[int] = mapped_column(ForeignKey("on_call.id"))
    position: Mapped[int] = mapped_column(Integer)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    sent_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    on_call: Mapped[OnCall] = relationship(lazy="joined")


class AuditHead(Base):
    """One row: the newest audit entry. Appenders lock it, so the chain has one order even with many writers."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64), default="")


class AuditEntry(Base):
    """An append-only, hash-chained, signed record of one view or action."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_target", "target"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=False)
    at: Mapped[str] = mapped_column(String(32))  # ISO 8601 UTC text: hashed exactly as stored on every backend
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text)  # canonical JSON text, hashed exactly as stored
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary)


__all__ = ["AuditEntry", "AuditHead", "CsamReferral", "OnCall", "Page", "Review", "SiteSafeguarding", "User",
           "UserSite", "WebSession"]
