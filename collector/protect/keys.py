"""Content keys: AES-256-GCM keys held outside the database, each known by an id so that keys can be rotated.

A key ring is read from `<data>/keys/content.key` (JSON, mode 0600, made at `init` or on first use) or from the
environment variable WARDWATCH_CONTENT_KEY (one or more base64 32-byte keys separated by commas, the first one
current). The id of a key is derived from the key itself, so a database written under one key and opened with
another fails with "key <id> is not held" instead of returning garbage.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from collector.errors import CollectorError

ENV_VAR = "WARDWATCH_CONTENT_KEY"
KEY_BYTES = 32
KEY_ID_BYTES = 4

log = logging.getLogger("wardwatch.protect")


class ContentKeyError(CollectorError):
    """Alert content cannot be encrypted or decrypted: a missing, wrong or damaged key, or a tampered row."""


def key_id_of(key: bytes) -> bytes:
    return hashlib.sha256(b"wardwatch content key id\0" + key).digest()[:KEY_ID_BYTES]


@dataclass
class KeyRing:
    """Every content key this collector holds; `current` encrypts, all of them decrypt."""

    keys: dict[bytes, bytes] = field(default_factory=dict)  # key id -> key
    current: bytes = b""
    source: str = ""  # where the keys came from, for messages (never the keys)
    ephemeral: bool = False  # held only by this process: nothing meant to last may be sealed with it
    reload_from: Path | None = None  # the key file, re-read once when a key id is missing (another process rotated)

    @classmethod
    def of(cls, *keys: bytes, source: str = "") -> KeyRing:
        """A ring of the given keys, the first one current."""
        for key in keys:
            if len(key) != KEY_BYTES:
                raise ContentKeyError(f"a content key must be {KEY_BYTES} bytes, got {len(key)}")
        ring = cls({key_id_of(k): k for k in keys}, key_id_of(keys[0]) if keys else b"", source)
        return ring

    def current_key(self) -> tuple[bytes, bytes]:
        if not self.current:
            raise ContentKeyError("no current content key")
        return self.current, self.keys[self.current]

    def key(self, key_id: bytes) -> bytes:
        if key_id not in self.keys and self.reload_from is not None and self.reload_from.exists():
            fresh = _decode(self.reload_from.read_bytes(), self.reload_from)
            self.keys, self.current = fresh.keys, fresh.current
        try:
            return self.keys[key_id]
        except KeyError:
            raise ContentKeyError(
                f"alert content is encrypted under content key {key_id.hex()}, which {self.source or 'this ring'} "
                "does not hold: the wrong key file or WARDWATCH_CONTENT_KEY is in use") from None


# ---------------------------------------------------------------- files and environment

def key_file(data_dir: Path) -> Path:
    return data_dir / "keys" / "content.key"


def _encode(ring_keys: dict[bytes, bytes], current: bytes) -> bytes:
    doc = {"current": current.hex(),
           "keys": {kid.hex(): base64.b64encode(k).decode() for kid, k in ring_keys.items()}}
    return (json.dumps(doc, indent=2) + "\n").encode()


def _decode(raw: bytes, path: Path) -> KeyRing:
    try:
        doc = json.loads(raw)
        keys = {bytes.fromhex(kid): base64.b64decode(k, validate=True) for kid, k in doc["keys"].items()}
        current = bytes.fromhex(doc["current"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ContentKeyError(f"{path} is not a WardWatch content key file") from exc
    for kid, key in keys.items():
        if len(key) != KEY_BYTES or key_id_of(key) != kid:
            raise ContentKeyError(f"{path} holds a damaged key (id {kid.hex()})")
    if current not in keys:
        raise ContentKeyError(f"{path} names a current key it does not hold")
    return KeyRing(keys, current, str(path))


def write_key_file(path: Path, ring: KeyRing) -> None:
    """Replace the key file atomically; 0600 from the moment it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(_encode(ring.keys, ring.current))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def create_key_file(path: Path) -> bool:
    """Make a key file with one new key unless one exists. Returns whether it made it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = secrets.token_bytes(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False  # made by `init` or by another process first: use it
    with os.fdopen(fd, "wb") as f:
        f.write(_encode({key_id_of(key): key}, key_id_of(key)))
        f.flush()
        os.fsync(f.fileno())
    return True


def ring_from_env(value: str) -> KeyRing:
    keys = []
    for part in value.split(","):
        try:
            keys.append(base64.b64decode(part.strip(), validate=True))
        except (ValueError, binascii.Error) as exc:
            raise ContentKeyError(f"{ENV_VAR} must hold base64 keys separated by commas") from exc
    if not keys:
        raise ContentKeyError(f"{ENV_VAR} is empty")
    try:
        return KeyRing.of(*keys, source=ENV_VAR)
    except ContentKeyError as exc:
        raise ContentKeyError(f"{ENV_VAR}: {exc}") from None


def load_keyring(data_dir: Path, create: bool = True) -> KeyRing:
    """The collector's key ring: the environment variable wins over the key file (made here if missing)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return ring_from_env(env)
    path = key_file(data_dir)
    if not path.exists():
        if not create:
            raise ContentKeyError(f"no content key: {path} is missing and {ENV_VAR} is not set")
        if create_key_file(path):
            log.info("made a new content key file at %s", path)
    try:
        ring = _decode(path.read_bytes(), path)
    except OSError as exc:
        raise ContentKeyError(f"cannot read the content key file {path}: {exc.strerror}") from exc
    ring.reload_from = path
    return ring


# ---------------------------------------------------------------- the ring this process uses

_ring: KeyRing | None = None
_warned_ephemeral = False


def use_keyring(ring: KeyRing | None) -> KeyRing | None:
    """Use `ring` in this process from now on; returns the ring used before (None: none was loaded)."""
    global _ring
    previous, _ring = _ring, ring
    return previous


def use_data_dir(data_dir: Path, engine: Engine | None = None) -> KeyRing:
    """Load (or make) the data directory's key ring and use it in this process.

    Given the engine, a missing key file is made only if the database holds no sealed content yet: a replica whose
    data directory was copied without `keys/` must not start sealing under a key no other replica has."""
    if engine is not None and not os.environ.get(ENV_VAR) and not key_file(data_dir).exists():
        sealed_under = _some_sealed_key_id(engine)
        if sealed_under is not None:
            raise ContentKeyError(
                f"{key_file(data_dir)} is missing, but the database holds content sealed under key "
                f"{sealed_under.hex()}: copy keys/content.key from the collector that made it (or set {ENV_VAR})")
    ring = load_keyring(data_dir)
    use_keyring(ring)
    return ring


def _some_sealed_key_id(engine: Engine) -> bytes | None:
    from sqlalchemy import text

    with engine.connect() as conn:
        blob = conn.execute(text("SELECT payload FROM alerts WHERE payload IS NOT NULL LIMIT 1")).scalar()
    if not blob:
        return None
    return bytes(blob)[1:1 + KEY_ID_BYTES]


def active_keyring() -> KeyRing:
    """The ring the column types use. Without one loaded (code that opened an engine itself, e.g. a unit test),
    the environment variable is used, else a key that lives only in this process: content it writes can be read
    back by this process only, never by another. Every collector command loads the real ring first."""
    global _ring, _warned_ephemeral
    if _ring is not None:
        return _ring
    env = os.environ.get(ENV_VAR)
    if env:
        _ring = ring_from_env(env)
        return _ring
    if not _warned_ephemeral:
        log.warning("no content key loaded: using a temporary key held only by this process")
        _warned_ephemeral = True
    _ring = KeyRing.of(secrets.token_bytes(KEY_BYTES), source="a temporary in-process key")
    _ring.ephemeral = True
    return _ring


def lasting_keyring() -> KeyRing:
    """The active ring, refusing a temporary one: for work whose result must outlive this process."""
    ring = active_keyring()
    if ring.ephemeral:
        raise ContentKeyError("no content key is loaded: run this through wardwatch-collector, which loads "
                              f"<data>/keys/content.key, or set {ENV_VAR}")
    return ring
