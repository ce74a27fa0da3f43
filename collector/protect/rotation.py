"""`keys rotate-content`: a new current content key, then every sealed value re-encrypted under it in batches.

Old keys stay in the ring so that anything not yet re-encrypted (or written meanwhile by a replica that has not
re-read the key file) still reads; `--reseal-only` finishes the job later without making yet another key.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from collector import audit
from collector.errors import CollectorError
from collector.protect.keys import (
    ENV_VAR,
    KEY_BYTES,
    KeyRing,
    key_file,
    key_id_of,
    load_keyring,
    ring_from_env,
    use_keyring,
    write_key_file,
)
from collector.protect.rows import SEALED_COLUMNS, reseal_under_current, transform_column_in_batches


@dataclass(frozen=True)
class RotationResult:
    key_id: str
    resealed: int
    new_key: bool


def ring_with_new_key(data_dir: Path) -> KeyRing:
    """Add a fresh key to the key file and make it current. The file is replaced before any row changes, so a crash
    at any point leaves a ring that reads everything."""
    if os.environ.get(ENV_VAR):
        ring = ring_from_env(os.environ[ENV_VAR])
        raise CollectorError(
            f"the content keys come from {ENV_VAR}; to rotate, put a new base64 key first in it ('NEW,OLD'), "
            f"restart the collector and run 'keys rotate-content --reseal-only' (current key {ring.current.hex()})")
    ring = load_keyring(data_dir)
    key = secrets.token_bytes(KEY_BYTES)
    new = KeyRing({**ring.keys, key_id_of(key): key}, key_id_of(key), ring.source, reload_from=ring.reload_from)
    write_key_file(key_file(data_dir), new)
    return new


def rotate_content_key(data_dir: Path, engine: Engine, reseal_only: bool = False, actor: str = "cli",
                       batch: int = 500) -> RotationResult:
    ring = load_keyring(data_dir) if reseal_only else ring_with_new_key(data_dir)
    use_keyring(ring)
    resealed = 0
    for sealed in SEALED_COLUMNS:
        resealed += transform_column_in_batches(engine, sealed, reseal_under_current(ring, sealed), batch=batch)
    with audit.write_session(engine) as session:
        audit.append(session, actor, "content-key.rotate" if not reseal_only else "content-key.reseal", "content-key",
                     {"key_id": ring.current.hex(), "resealed": resealed, "keys_held": len(ring.keys)})
    return RotationResult(ring.current.hex(), resealed, not reseal_only)
