"""Versioned keyword bundles: build, sign (Ed25519) and verify.

A bundle is gzip-compressed compact JSON holding every validated rule and the global allow-list. The signature is
kept separate (64 bytes) because the collector stores and serves the two side by side; for a single file on disk
`pack_signed` puts them together behind a magic header. `verify_bundle` checks the signature BEFORE it parses, and
re-validates the content with the same schema checks as the TOML loader.

A school's own rules and allow entries (`with_site_rules`) join the shipped ones in the same sections, so they pass
the same checks. An optional `exemptions` section carries time-boxed exemptions, each
`{"id", "categories", "rules", "agents", "start", "end"}` (ISO 8601 UTC); agents that predate it ignore the key, so
old bundles stay valid and new ones still load everywhere. The agent parses that section
(agent/detect/exemptions.py) only after the signature has verified.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signatures.loader import load_library
from signatures.schema import ALLOW_CATEGORY, Library, LibraryError, assemble, parse_document, rule_to_dict

BUNDLE_FORMAT = "wardwatch-keyword-bundle"
BUNDLE_FORMAT_VERSION = 1
SIGNED_MAGIC = b"WWB1"
SIGNATURE_BYTES = 64
EXEMPTIONS_KEY = "exemptions"
_MAX_BUNDLE_BYTES = 64 * 1024 * 1024  # a bomb guard: real bundles are a few hundred kB uncompressed

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519

# cryptography is imported inside the functions that sign or verify: the session helper only parses a bundle the
# service has already verified, and importing cryptography would cost it ~12 MB of resident memory for nothing.


class BundleError(LibraryError):
    """A bundle is unsigned, wrongly signed or malformed; it must not be used."""


def library_to_document(library: Library, version: str,
                        exemptions: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    categories: dict[str, list[dict[str, Any]]] = {}
    for rule in library.rules:
        categories.setdefault(rule.category, []).append(rule_to_dict(rule))
    return {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "version": version,
        "libraries": [
            {"library": {"category": c, "schema": 1, "description": library.descriptions.get(c, "")}, "rule": rules}
            for c, rules in sorted(categories.items())
        ],
        "allow": list(library.allow),
    } | ({EXEMPTIONS_KEY: [dict(e) for e in exemptions]} if exemptions else {})


def _no_line(_rule_id: str | None) -> int:
    return 1


def with_site_rules(library: Library, documents: Iterable[Mapping[str, Any]]) -> Library:
    """The library plus a site's own rule and allow documents (TOML-shaped dicts, one per category or `allow`),
    each validated by `parse_document` like a file; an id already used anywhere is refused."""
    seen = {rule.id for rule in library.rules}
    rules, allow = list(library.rules), list(library.allow)
    for doc in documents:
        header = doc.get("library")
        where = f"site[{header.get('category') if isinstance(header, Mapping) else '?'}]"
        _category, _description, doc_rules, doc_allow = parse_document(doc, where, _no_line)
        for rule in doc_rules:
            if rule.id in seen:
                raise LibraryError(f"{where}:1: duplicate rule id {rule.id!r}")
            seen.add(rule.id)
            rules.append(rule)
        allow.extend(doc_allow)
    return Library(rules=tuple(rules), allow=tuple(allow), descriptions=library.descriptions,
                   version=library.version)


def build_bundle(libs_dir: Path, version: str, site_documents: Iterable[Mapping[str, Any]] = (),
                 exemptions: Iterable[Mapping[str, Any]] = ()) -> bytes:
    """Compile every library under libs_dir, plus a site's own rule documents and exemptions, into one deterministic
    bundle (same input, same bytes)."""
    if not version or len(version) > 64 or not version.isprintable():
        raise BundleError("bundle:1: version must be 1 to 64 printable characters")
    library = with_site_rules(load_library(libs_dir), site_documents)
    document = library_to_document(library, version, list(exemptions))
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def sign_bundle(bundle: bytes, private_key: ed25519.Ed25519PrivateKey) -> bytes:
    """The 64-byte Ed25519 signature over the bundle bytes."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if not isinstance(private_key, ed25519.Ed25519PrivateKey):
        raise BundleError("bundle:1: the signing key must be an Ed25519 private key")
    return private_key.sign(bundle)


def _public_key(public_key: ed25519.Ed25519PublicKey | bytes) -> ed25519.Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return public_key
    try:
        if public_key.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(public_key)
        elif len(public_key) == 32:
            key = ed25519.Ed25519PublicKey.from_public_bytes(public_key)
        else:
            key = serialization.load_der_public_key(public_key)
    except ValueError:
        raise BundleError("bundle:1: the public key is not a valid PEM, DER or raw Ed25519 key") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise BundleError("bundle:1: the public key is not an Ed25519 key")
    return key


def _decode(bundle: bytes) -> dict[str, Any]:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(bundle)) as stream:
            raw = stream.read(_MAX_BUNDLE_BYTES + 1)
        if len(raw) > _MAX_BUNDLE_BYTES:
            raise BundleError("bundle:1: bundle is too large")
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError):
        raise BundleError("bundle:1: bundle is not gzip-compressed JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise BundleError("bundle:1: not a WardWatch keyword bundle")
    if doc.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise BundleError(f"bundle:1: unsupported bundle format version {doc.get('format_version')!r}")
    return doc


def verify_bundle(bundle: bytes, signature: bytes, public_key: ed25519.Ed25519PublicKey | bytes) -> Library:
    """Verify the signature, then parse and validate; raises BundleError and returns nothing usable on failure."""
    return verify_bundle_with_exemptions(bundle, signature, public_key)[0]


def verify_bundle_with_exemptions(bundle: bytes, signature: bytes, public_key: ed25519.Ed25519PublicKey | bytes
                                  ) -> tuple[Library, list[dict[str, Any]]]:
    """Like verify_bundle, and also the raw `exemptions` section (empty if absent), for the agent to parse."""
    from cryptography.exceptions import InvalidSignature

    key = _public_key(public_key)
    if not signature:
        raise BundleError("bundle:1: bundle is unsigned")
    try:
        key.verify(signature, bundle)
    except InvalidSignature:
        raise BundleError("bundle:1: signature does not verify with the bundle key; bundle refused") from None
    return parse_verified_bundle(bundle)


def parse_verified_bundle(bundle: bytes) -> tuple[Library, list[dict[str, Any]]]:
    """Parse and validate a bundle whose signature was checked by whoever handed it over (the agent service checks
    it before installing, in a directory only the service can write). Returns the library and the raw exemptions."""
    doc = _decode(bundle)
    version = doc.get("version")
    if not isinstance(version, str) or not version:
        raise BundleError("bundle:1: bundle has no version")
    libraries = doc.get("libraries")
    allow = doc.get("allow", [])
    if not isinstance(libraries, list) or not isinstance(allow, list):
        raise BundleError("bundle:1: bundle has no libraries")
    exemptions = doc.get(EXEMPTIONS_KEY, [])
    if not isinstance(exemptions, list) or not all(isinstance(e, dict) for e in exemptions):
        raise BundleError("bundle:1: exemptions must be a list of objects")
    try:
        return assemble(_parse_libraries(libraries, allow), version=version), exemptions
    except BundleError:
        raise
    except LibraryError as exc:
        raise BundleError(str(exc)) from None


def _parse_libraries(libraries: list[Any], allow: list[Any]) -> list:
    no_line = _no_line
    parsed = []
    for index, lib in enumerate(libraries):
        if not isinstance(lib, dict):
            raise BundleError(f"bundle:{index + 1}: library entry is not an object")
        header = lib.get("library")
        where = f"bundle[{header.get('category', index) if isinstance(header, dict) else index}]"
        parsed.append((where, no_line, parse_document(lib, where, no_line)))
    if allow:
        allow_doc = {"library": {"category": ALLOW_CATEGORY, "schema": 1}, "allow": [{"phrases": allow}]}
        parsed.append(("bundle[allow]", no_line, parse_document(allow_doc, "bundle[allow]", no_line)))
    return parsed


def pack_signed(bundle: bytes, signature: bytes) -> bytes:
    """One file holding both: magic, signature, bundle."""
    if len(signature) != SIGNATURE_BYTES:
        raise BundleError("bundle:1: an Ed25519 signature is 64 bytes")
    return SIGNED_MAGIC + signature + bundle


def unpack_signed(data: bytes) -> tuple[bytes, bytes]:
    """Split a packed file into (bundle, signature); a file without the magic header is an unsigned bundle."""
    if not data.startswith(SIGNED_MAGIC) or len(data) < len(SIGNED_MAGIC) + SIGNATURE_BYTES:
        raise BundleError("bundle:1: bundle is unsigned (no signature header)")
    start = len(SIGNED_MAGIC)
    return data[start + SIGNATURE_BYTES:], data[start:start + SIGNATURE_BYTES]


def load_signed_file(path: Path, public_key: ed25519.Ed25519PublicKey | bytes) -> Library:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}:1: cannot read bundle: {exc.strerror or exc}") from None
    bundle, signature = unpack_signed(data)
    return verify_bundle(bundle, signature, public_key)


def load_private_key(path: Path) -> ed25519.Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise BundleError(f"{path}:1: cannot read key: {exc.strerror or exc}") from None
    except (ValueError, TypeError):
        raise BundleError(f"{path}:1: not an unencrypted PEM private key") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise BundleError(f"{path}:1: bundle keys are Ed25519; this is a different key type")
    return key


def public_key_pem(private_key: ed25519.Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
