"""The monitoring notice pupils are shown at the start of each session, and the version the collector records."""

from __future__ import annotations

from typing import Any

DEFAULT_NOTICE = (
    "This computer is monitored by your school to help keep you safe online. What you type and the titles of the "
    "windows you use are checked on this computer for signs that someone may be at risk; only possible concerns "
    "are sent to the school's safeguarding staff. Passwords are never recorded."
)


def notice_text(config: dict[str, Any]) -> str:
    """The school's notice from agent.json, or the default."""
    return str(config.get("notice_text") or DEFAULT_NOTICE)


def notice_version(config: dict[str, Any]) -> str:
    """The version the collector records as shown: the school's own label, else a digest of the text. The service
    computes it, not the helper: hashlib loads OpenSSL (~3 MB resident), which the helper otherwise never needs."""
    import hashlib

    return str(config.get("notice_version")
               or "sha256:" + hashlib.sha256(notice_text(config).encode()).hexdigest()[:16])

