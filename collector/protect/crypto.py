"""Sealing one value of one column of one row with AES-256-GCM. No I/O.

Stored form: version (1 byte) | key id (4) | row key length (2, big-endian) | row key (UTF-8) | nonce (12) |
ciphertext with its 16-byte tag. The additional authenticated data names the table, the column and the row, so a
ciphertext moved to another column or another row no longer matches what the reader expects (see types.py).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from collector.protect.keys import KEY_ID_BYTES, ContentKeyError, KeyRing

FORMAT_VERSION = 1
NONCE_BYTES = 12
_HEADER = 1 + KEY_ID_BYTES + 2


def aad(column: str, row_key: str) -> bytes:
    return b"wardwatch-content/v1\0" + column.encode() + b"\0" + row_key.encode()


# One AESGCM object per key: building it (the key schedule) cost as much as sealing a short value, and the
# gateway seals several values for every alert it stores. Keys are few (the current one and rotated-out ones).
_ciphers: dict[bytes, AESGCM] = {}


def _cipher(key: bytes) -> AESGCM:
    cipher = _ciphers.get(key)
    if cipher is None:
        if len(_ciphers) > 64:
            _ciphers.clear()
        cipher = _ciphers[key] = AESGCM(key)
    return cipher


def seal(ring: KeyRing, plaintext: bytes, column: str, row_key: str) -> bytes:
    key_id, key = ring.current_key()
    row = row_key.encode()
    if len(row) > 0xFFFF:
        raise ValueError("row key too long")
    nonce = os.urandom(NONCE_BYTES)  # random 96-bit nonces: safe far beyond the 2^32 messages one key will see
    sealed = _cipher(key).encrypt(nonce, plaintext, aad(column, row_key))
    return bytes([FORMAT_VERSION]) + key_id + len(row).to_bytes(2, "big") + row + nonce + sealed


def seal_many(ring: KeyRing, plaintexts: list[bytes], column: str, row_keys: list[str]) -> list[bytes]:
    """`seal` for many values of one column (one per row key), in the same stored form; an empty plaintext stays
    empty. One urandom call for every nonce, and the key, cipher and headers looked up once: the gateway seals
    several columns of every alert it stores."""
    key_id, key = ring.current_key()
    encrypt = _cipher(key).encrypt
    head = bytes([FORMAT_VERSION]) + key_id
    prefix = aad(column, "")
    nonces = os.urandom(NONCE_BYTES * sum(1 for p in plaintexts if p))
    out = []
    used = 0
    for plain, row_key in zip(plaintexts, row_keys, strict=True):
        if not plain:
            out.append(b"")
            continue
        row = row_key.encode()
        if len(row) > 0xFFFF:
            raise ValueError("row key too long")
        nonce = nonces[used:used + NONCE_BYTES]
        used += NONCE_BYTES
        out.append(head + len(row).to_bytes(2, "big") + row + nonce + encrypt(nonce, plain, prefix + row))
    return out


def key_id_in(blob: bytes) -> bytes:
    """The id of the key a stored value was sealed with (for rotation: which rows still need re-encrypting)."""
    return bytes(blob[1:1 + KEY_ID_BYTES])


def unseal(ring: KeyRing, blob: bytes, column: str) -> tuple[bytes, str]:
    """The plaintext and the row key it was sealed for. Raises ContentKeyError, never returns garbage."""
    if len(blob) < _HEADER or blob[0] != FORMAT_VERSION:
        raise ContentKeyError(f"{column} holds a value that is not WardWatch ciphertext (unencrypted or damaged)")
    key_id = bytes(blob[1:1 + KEY_ID_BYTES])
    row_len = int.from_bytes(blob[1 + KEY_ID_BYTES:_HEADER], "big")
    row_end = _HEADER + row_len
    if len(blob) < row_end + NONCE_BYTES + 16:
        raise ContentKeyError(f"{column} holds a truncated ciphertext")
    row_key = bytes(blob[_HEADER:row_end]).decode("utf-8", "replace")
    nonce = bytes(blob[row_end:row_end + NONCE_BYTES])
    try:
        plaintext = _cipher(ring.key(key_id)).decrypt(nonce, bytes(blob[row_end + NONCE_BYTES:]),
                                                     aad(column, row_key))
    except InvalidTag:
        raise ContentKeyError(f"{column} of row {row_key} does not decrypt: the ciphertext was altered or moved, "
                              "or the key is wrong") from None
    return plaintext, row_key
