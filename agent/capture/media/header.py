"""Classify a volume from its raw first bytes: encryption signatures, filesystem magic, entropy. No I/O here.

The caller reads `HEAD_BYTES` from the start of the volume, asks `extra_reads()` which further blocks the header
points at (BitLocker FVE metadata, the LUKS2 secondary header), reads those, and passes everything in. Layouts:
LUKS1/LUKS2 on-disk format specifications; BitLocker as documented by libbde and cryptsetup's BITLK notes.
"""

from __future__ import annotations

import json
import math
import struct
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.capture.media.report import (
    BITLOCKER,
    BITLOCKER_TO_GO,
    ENCRYPTED_LOCKED,
    LUKS1,
    LUKS2,
    NO_SCHEME,
    NOT_ENCRYPTED,
    UNKNOWN_HIGH_ENTROPY,
    VERACRYPT_LIKE,
)

# Enough to see every superblock we know, including btrfs at 64 KiB.
HEAD_BYTES = 0x11000
# Ciphertext is indistinguishable from random; random bytes score close to 8 bits/byte over 64 KiB.
HIGH_ENTROPY_BITS = 7.5
ENTROPY_SAMPLE_BYTES = 0x10000
# Below this a sample of random bytes cannot reach the threshold reliably, so entropy says nothing.
MIN_ENTROPY_SAMPLE_BYTES = 1024

LUKS_MAGIC = b"LUKS\xba\xbe"
LUKS2_SECONDARY_MAGIC = b"SKUL\xba\xbe"
FVE_SIGNATURE = b"-FVE-FS-"
BITLOCKER_TO_GO_OEM = b"MSWIN4.1"
BITLOCKER_GUID = uuid.UUID("4967d63b-2e29-4ad8-8399-f6a339e3d001").bytes_le
# Win7+ volumes keep the GUID and three FVE metadata offsets at 160/176; To Go volumes (a FAT boot sector
# that Windows' reader can still mount) keep them at 424/440, which is why `-FVE-FS-` alone misses them.
BITLOCKER_LAYOUTS = {BITLOCKER: (160, 176), BITLOCKER_TO_GO: (424, 440)}
FVE_BLOCK_BYTES = 12
LUKS2_SECONDARY_PROBE_BYTES = 8
MAX_PARTITIONS = 16


@dataclass(frozen=True)
class HeaderFinding:
    """What the raw bytes say. `state` is never 'encrypted-unlocked': only the OS can tell that."""

    state: str
    scheme: str = NO_SCHEME
    filesystem: str | None = None
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class Partition:
    offset: int
    length: int
    label: str  # e.g. "p1 type 0x0c"


@dataclass(frozen=True)
class PartitionTable:
    kind: str  # "dos" or "gpt", as blkid calls them
    partitions: tuple[Partition, ...] = field(default_factory=tuple)
    evidence: tuple[str, ...] = ()


def _u16le(buf: bytes, at: int) -> int:
    return struct.unpack_from("<H", buf, at)[0] if len(buf) >= at + 2 else 0


def _u32le(buf: bytes, at: int) -> int:
    return struct.unpack_from("<I", buf, at)[0] if len(buf) >= at + 4 else 0


def _u64le(buf: bytes, at: int) -> int:
    return struct.unpack_from("<Q", buf, at)[0] if len(buf) >= at + 8 else 0


def _cstr(buf: bytes) -> str:
    return buf.split(b"\0", 1)[0].decode("ascii", "replace")


def entropy_bits_per_byte(sample: bytes) -> float:
    """Shannon entropy of `sample` in bits per byte (0 for empty input)."""
    if not sample:
        return 0.0
    total = len(sample)
    return -sum(n / total * math.log2(n / total) for n in Counter(sample).values())


# ---------------------------------------------------------------------------------------------------- encryption


def _luks_version(head: bytes) -> int | None:
    if head[:6] != LUKS_MAGIC or len(head) < 8:
        return None
    version = struct.unpack_from(">H", head, 6)[0]
    return version if version in (1, 2) else None


def _bitlocker_layout(head: bytes) -> tuple[str, list[int], str] | None:
    """(scheme, FVE metadata offsets, layout name) when the boot sector is a BitLocker one."""
    oem = head[3:11]
    if oem == FVE_SIGNATURE:
        guid_at, offsets_at = BITLOCKER_LAYOUTS[BITLOCKER]
        if head[guid_at : guid_at + 16] == BITLOCKER_GUID:
            return BITLOCKER, [_u64le(head, offsets_at + 8 * i) for i in range(3)], "Windows 7+ layout"
        # Vista keeps one metadata location, as a cluster number at 56.
        cluster_bytes = _u16le(head, 11) * (head[13] if len(head) > 13 else 0)
        return BITLOCKER, [_u64le(head, 56) * cluster_bytes], "Vista layout"
    if oem == BITLOCKER_TO_GO_OEM:
        guid_at, offsets_at = BITLOCKER_LAYOUTS[BITLOCKER_TO_GO]
        if head[guid_at : guid_at + 16] == BITLOCKER_GUID:
            return BITLOCKER_TO_GO, [_u64le(head, offsets_at + 8 * i) for i in range(3)], "To Go layout"
    return None


def extra_reads(head: bytes) -> list[tuple[int, int]]:
    """(offset, length) of the blocks beyond the head that the header refers to and classification wants."""
    wanted: list[tuple[int, int]] = []
    bitlocker = _bitlocker_layout(head)
    if bitlocker:
        wanted += [(off, FVE_BLOCK_BYTES) for off in bitlocker[1] if off > 0]
    if _luks_version(head) == 2:
        hdr_size = struct.unpack_from(">Q", head, 8)[0]
        if hdr_size > 0:
            wanted.append((hdr_size, LUKS2_SECONDARY_PROBE_BYTES))
            if hdr_size > len(head):
                wanted.append((0, min(hdr_size, 4 << 20)))  # the JSON area, for the cipher name
    return wanted


def _luks_finding(head: bytes, size: int, blocks: Mapping[int, bytes]) -> HeaderFinding:
    version = _luks_version(head)
    if version == 1:
        cipher = f"{_cstr(head[8:40])}-{_cstr(head[40:72])}"
        evidence = [f"LUKS1 header at 0, cipher {cipher}"]
        payload_bytes = struct.unpack_from(">I", head, 104)[0] * 512 if len(head) >= 108 else 0
        if size < payload_bytes:
            evidence.append(f"truncated: {size} bytes, header says data starts at {payload_bytes}")
        return HeaderFinding(ENCRYPTED_LOCKED, LUKS1, "crypto_LUKS", tuple(evidence))
    hdr_size = struct.unpack_from(">Q", head, 8)[0]
    evidence = [f"LUKS2 header at 0, header area {hdr_size} bytes"]
    area = blocks.get(0, head)[4096:hdr_size]
    try:
        metadata = json.loads(area.split(b"\0", 1)[0])
        ciphers = sorted({seg.get("encryption", "?") for seg in metadata.get("segments", {}).values()})
        if ciphers:
            evidence.append(f"cipher {', '.join(ciphers)}")
    except (ValueError, AttributeError):
        evidence.append("LUKS2 JSON metadata unreadable")
    if blocks.get(hdr_size, b"")[:6] == LUKS2_SECONDARY_MAGIC:
        evidence.append(f"secondary header at {hdr_size}")
    else:
        evidence.append(f"no secondary header at {hdr_size} (damaged or truncated)")
    return HeaderFinding(ENCRYPTED_LOCKED, LUKS2, "crypto_LUKS", tuple(evidence))


def _bitlocker_finding(head: bytes, blocks: Mapping[int, bytes]) -> HeaderFinding | None:
    layout = _bitlocker_layout(head)
    if layout is None:
        return None
    scheme, offsets, name = layout
    confirmed = [
        off for off in offsets
        if off > 0 and blocks.get(off, b"")[:8] == FVE_SIGNATURE and _u16le(blocks[off], 10) in (1, 2)
    ]
    evidence = [f"BitLocker boot sector ({name})"]
    if confirmed:
        evidence.append(f"FVE metadata confirmed at {len(confirmed)}/{len([o for o in offsets if o])} offsets")
        return HeaderFinding(ENCRYPTED_LOCKED, scheme, "BitLocker", tuple(evidence))
    # A BitLocker boot sector with no metadata behind it is damaged or truncated: neither plain nor provably
    # encrypted, so it is reported as the unknown case rather than trusted either way.
    evidence.append("no FVE metadata block at the offsets the boot sector names (damaged or truncated)")
    return HeaderFinding(UNKNOWN_HIGH_ENTROPY, scheme, None, tuple(evidence))


def find_encryption(head: bytes, size: int, blocks: Mapping[int, bytes]) -> HeaderFinding | None:
    """A LUKS or BitLocker finding when the header carries one of their signatures, else None."""
    if _luks_version(head):
        return _luks_finding(head, size, blocks)
    return _bitlocker_finding(head, blocks)


# ---------------------------------------------------------------------------------------------------- filesystems


def _ext_flavour(head: bytes) -> str:
    compat, incompat = _u32le(head, 1024 + 0x5C), _u32le(head, 1024 + 0x60)
    if incompat & (0x40 | 0x80 | 0x200):  # extents, 64bit, flex_bg
        return "ext4"
    return "ext3" if compat & 0x4 else "ext2"


def _is_fat(head: bytes) -> bool:
    return head[510:512] == b"\x55\xaa" and (head[82:87] == b"FAT32" or head[54:57] == b"FAT")


def find_filesystem(head: bytes) -> str | None:
    """The plain filesystem whose magic the header carries, named as blkid names it; None when none is known."""
    checks: list[tuple[str, bool]] = [
        ("ntfs", head[3:11] == b"NTFS    "),
        ("exfat", head[3:11] == b"EXFAT   "),
        ("vfat", _is_fat(head)),
        ("apfs", head[32:36] == b"NXSB"),
        ("xfs", head[:4] == b"XFSB"),
        ("squashfs", head[:4] == b"hsqs"),
        ("hfsplus", head[1024:1026] in (b"H+", b"HX")),
        ("f2fs", _u32le(head, 1024) == 0xF2F52010),
        ("iso9660", head[0x8001:0x8006] == b"CD001"),
        ("udf", head[0x8001:0x8006] in (b"BEA01", b"NSR02", b"NSR03")),
        ("btrfs", head[0x10040:0x10048] == b"_BHRfS_M"),
        ("swap", head[4086:4096] in (b"SWAPSPACE2", b"SWAP-SPACE")),
    ]
    for name, matched in checks:
        if matched:
            return name
    if head[1080:1082] == b"\x53\xef":
        return _ext_flavour(head)
    return None


# ---------------------------------------------------------------------------------------------------- partitions


def _gpt(head: bytes, size: int) -> PartitionTable | None:
    if head[512:520] != b"EFI PART":
        return None
    entries_at, count, entry_size = _u64le(head, 512 + 72) * 512, _u32le(head, 512 + 80), _u32le(head, 512 + 84)
    if entry_size < 128:
        return PartitionTable("gpt", (), ("GPT header with an invalid entry size",))
    parts: list[Partition] = []
    for i in range(min(count, 128)):
        at = entries_at + i * entry_size
        if at + 48 > len(head):
            break
        if head[at : at + 16] == b"\0" * 16:
            continue
        first, last = _u64le(head, at + 32), _u64le(head, at + 40)
        if first and last >= first and first * 512 < max(size, 1):
            parts.append(Partition(first * 512, (last - first + 1) * 512, f"p{i + 1}"))
    return PartitionTable("gpt", tuple(parts[:MAX_PARTITIONS]))


def _dos(head: bytes, size: int) -> PartitionTable | None:
    if head[510:512] != b"\x55\xaa" or len(head) < 512:
        return None
    entries = [head[446 + 16 * i : 462 + 16 * i] for i in range(4)]
    # Boot code in a filesystem's boot sector is not a table: every status byte must be 0x00 or 0x80.
    if any(e[0] not in (0x00, 0x80) for e in entries) or not any(e[4] for e in entries):
        return None
    parts: list[Partition] = []
    skipped: list[str] = []
    for i, entry in enumerate(entries):
        kind, start, count = entry[4], _u32le(entry, 8), _u32le(entry, 12)
        if kind == 0 or count == 0:
            continue
        if kind in (0x05, 0x0F, 0x85):
            skipped.append(f"p{i + 1} is an extended partition; logical partitions are not examined")
            continue
        if start * 512 < max(size, 1):
            parts.append(Partition(start * 512, count * 512, f"p{i + 1} type 0x{kind:02x}"))
    return PartitionTable("dos", tuple(parts), tuple(skipped))


def find_partitions(head: bytes, size: int) -> PartitionTable | None:
    """The partition table of a whole disk or disk image, when there is one (GPT first: it has a protective MBR)."""
    return _gpt(head, size) or _dos(head, size)


# ---------------------------------------------------------------------------------------------------- verdicts


def judge_unrecognised(head: bytes, size: int) -> HeaderFinding:
    """No signature and no filesystem: empty, blank, too short to judge, or decided by entropy."""
    if size == 0 or not head:
        return HeaderFinding(NOT_ENCRYPTED, NO_SCHEME, None, ("empty: holds no data",))
    sample = head[:ENTROPY_SAMPLE_BYTES]
    if not sample.strip(b"\0"):
        return HeaderFinding(NOT_ENCRYPTED, NO_SCHEME, None, (f"blank: first {len(sample)} bytes are zero",))
    if len(sample) < MIN_ENTROPY_SAMPLE_BYTES:
        return HeaderFinding(
            NOT_ENCRYPTED, NO_SCHEME, None, (f"only {len(sample)} bytes: too small to hold an encrypted volume",)
        )
    bits = entropy_bits_per_byte(sample)
    measured = f"no filesystem signature; entropy {bits:.3f} bits/byte over {len(sample)} bytes"
    if bits > HIGH_ENTROPY_BITS:
        # VeraCrypt and TrueCrypt leave no signature, so this is a suspicion, never a certainty.
        return HeaderFinding(UNKNOWN_HIGH_ENTROPY, VERACRYPT_LIKE, None, (measured, "possibly encrypted"))
    return HeaderFinding(NOT_ENCRYPTED, NO_SCHEME, None, (measured, "too low for ciphertext"))


def classify_header(head: bytes, size: int, blocks: Mapping[int, bytes]) -> HeaderFinding:
    """Classify one volume (not a partitioned disk) from its head and the blocks `extra_reads` asked for."""
    found = find_encryption(head, size, blocks)
    if found:
        return found
    filesystem = find_filesystem(head)
    if filesystem == "apfs":
        # APFS encrypts per volume inside the container; the flag sits behind the object map, so only the
        # OS (diskutil on macOS) can say. Unknown, not "not encrypted": a false "plain" would hide a risk.
        return HeaderFinding(
            UNKNOWN_HIGH_ENTROPY, NO_SCHEME, "apfs", ("APFS container: encryption is per volume; needs macOS",)
        )
    if filesystem:
        return HeaderFinding(NOT_ENCRYPTED, NO_SCHEME, filesystem, (f"{filesystem} superblock",))
    return judge_unrecognised(head, size)


# Worst first: a disk holding one plain partition is a plain disk as far as the school policy goes.
_STATE_RANK = (NOT_ENCRYPTED, UNKNOWN_HIGH_ENTROPY, ENCRYPTED_LOCKED)


def combine_partitions(table: PartitionTable, findings: list[tuple[Partition, HeaderFinding]]) -> HeaderFinding:
    """One verdict for a partitioned disk: the least protected partition decides the state."""
    evidence = [f"{table.kind} partition table with {len(findings)} partition(s)", *table.evidence]
    for part, found in findings:
        detail = found.filesystem or found.scheme
        evidence.append(f"{part.label} at {part.offset}: {found.state} ({detail})")
    if not findings:
        return HeaderFinding(NOT_ENCRYPTED, NO_SCHEME, None, (*evidence, "no data partitions"))
    worst = min(findings, key=lambda pf: _STATE_RANK.index(pf[1].state) if pf[1].state in _STATE_RANK else 0)[1]
    schemes = {found.scheme for _, found in findings}
    scheme = schemes.pop() if len(schemes) == 1 else worst.scheme
    filesystems = sorted({found.filesystem for _, found in findings if found.filesystem})
    return HeaderFinding(worst.state, scheme, ",".join(filesystems) or None, tuple(evidence))
