"""macOS: `diskutil info -plist` and `diskutil apfs list -plist`. Imported only on macOS at run time.

APFS encrypts per volume inside a container, which the raw header cannot show; diskutil can, so on macOS the
OS verdict decides APFS volumes.
"""

from __future__ import annotations

import os
import plistlib
import subprocess

from agent.capture.media.report import APFS_ENCRYPTED
from agent.capture.media.verdict import OsFacts

DISKUTIL_TIMEOUT_S = 20


def diskutil_plist(*args: str) -> dict:
    """Run diskutil with -plist and parse its output; an empty dict when it fails (the header still decides)."""
    try:
        done = subprocess.run(["diskutil", *args], capture_output=True, timeout=DISKUTIL_TIMEOUT_S)
        parsed = plistlib.loads(done.stdout) if done.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, plistlib.InvalidFileException, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _apfs_volume(apfs_list: dict, identifier: str) -> dict | None:
    for container in apfs_list.get("Containers", []):
        for volume in container.get("Volumes", []):
            if volume.get("DeviceIdentifier") == identifier:
                return volume
    return None


def facts_from_diskutil(info: dict, apfs_list: dict | None = None) -> OsFacts:
    """OsFacts from `diskutil info -plist` (and, for APFS volumes, `diskutil apfs list -plist`)."""
    facts = OsFacts(
        device=info.get("DeviceIdentifier"),
        size_bytes=info.get("TotalSize") or info.get("Size"),
        filesystem=info.get("FilesystemType") or info.get("FilesystemName"),
        model=(info.get("MediaName") or "").strip() or None,
        bus=info.get("BusProtocol"),
        removable=bool(info.get("RemovableMedia") or info.get("Ejectable") or info.get("Internal") is False),
    )
    if facts.bus:
        facts.evidence.append(f"bus protocol {facts.bus}")
    volume = _apfs_volume(apfs_list or {}, facts.device or "") if facts.filesystem == "apfs" else None
    encrypted = info.get("Encryption", info.get("FileVault"))
    locked = info.get("Locked")
    if volume is not None:
        encrypted = volume.get("Encryption", volume.get("FileVault", encrypted))
        locked = volume.get("Locked", locked)
    if info.get("CoreStorageEncrypted"):
        encrypted = True
    if isinstance(encrypted, bool):
        facts.encrypted = encrypted
        facts.scheme = APFS_ENCRYPTED if encrypted else None
        facts.evidence.append(f"diskutil: {'encrypted' if encrypted else 'not encrypted'}")
    if isinstance(locked, bool):
        facts.unlocked = not locked
        facts.evidence.append(f"diskutil: {'locked' if locked else 'unlocked'}")
    return facts


def probe(path: str, st: os.stat_result | None) -> OsFacts:
    if not path.startswith("/dev/"):
        return OsFacts(evidence=["image file: no diskutil details"])
    info = diskutil_plist("info", "-plist", path)
    if not info:
        return OsFacts(evidence=["diskutil info gave nothing"])
    apfs = diskutil_plist("apfs", "list", "-plist") if info.get("FilesystemType") == "apfs" else None
    return facts_from_diskutil(info, apfs)
