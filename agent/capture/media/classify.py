"""classify_path: read a block device or image file, classify its header, add what the OS says."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from typing import BinaryIO

from agent.capture.media import header
from agent.capture.media.header import HeaderFinding
from agent.capture.media.report import NO_ACCESS, MediaReport
from agent.capture.media.verdict import OsFacts, combine

# Raw volumes on Windows (and some block devices) only accept reads aligned to the sector size.
_ALIGN = 4096

Probe = Callable[[str, "os.stat_result | None"], OsFacts]


def _no_access(path: str, why: str) -> MediaReport:
    return MediaReport(path=path, state=NO_ACCESS, evidence=[why], why=why)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device")):
        if test(mode):
            return name
    return "not a regular file"


def _is_windows_device(path: str) -> bool:
    return sys.platform == "win32" and path.startswith(("\\\\.\\", "\\\\?\\"))


def _stat_readable(path: str) -> tuple[os.stat_result | None, str | None]:
    """(stat, None) for something we may open, or (None, why not). Never opens a FIFO: that would block."""
    if _is_windows_device(path):
        return None, None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return None, f"dangling symbolic link to {os.readlink(path)}"
        return None, "does not exist"
    except PermissionError:
        return None, "permission denied (run as root/administrator to read devices)"
    except OSError as exc:
        return None, exc.strerror or str(exc)
    if stat.S_ISDIR(st.st_mode):
        return None, "is a directory, not a block device or image file"
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        return None, f"is {_kind(st.st_mode)}, not a block device or image file"
    return st, None


def read_at(f: BinaryIO, offset: int, length: int) -> bytes:
    """`length` bytes at `offset` (fewer at the end of the volume), with the read itself sector-aligned."""
    start = offset - offset % _ALIGN
    end = offset + length
    end += -end % _ALIGN
    f.seek(start)
    data = f.read(end - start)
    return data[offset - start : offset - start + length]


def _volume_size(f: BinaryIO, st: os.stat_result | None) -> int | None:
    """Bytes in the volume, or None when only the OS probe can say.

    Seeking to the end measures a block device on Linux only; elsewhere it may answer 0, which would make a
    full stick look empty, so the size is left to diskutil / Storage WMI there.
    """
    if st is not None and stat.S_ISREG(st.st_mode):
        return st.st_size
    if not sys.platform.startswith("linux"):
        return None
    try:
        return f.seek(0, os.SEEK_END)
    except OSError:
        return None


def _read_volume(f: BinaryIO, base: int, size: int) -> tuple[bytes, dict[int, bytes]]:
    """The head of the volume starting at `base`, and the further blocks its header points at."""
    head = read_at(f, base, min(header.HEAD_BYTES, size))
    blocks = {off: read_at(f, base + off, length) for off, length in header.extra_reads(head) if off < size}
    return head, blocks


def _classify_open(f: BinaryIO, size: int) -> HeaderFinding:
    head, blocks = _read_volume(f, 0, size)
    if header.find_encryption(head, size, blocks) or header.find_filesystem(head):
        return header.classify_header(head, size, blocks)
    table = header.find_partitions(head, size)
    if table is None:
        return header.judge_unrecognised(head, size)
    found = []
    for part in table.partitions:
        part_size = min(part.length, size - part.offset)
        part_head, part_blocks = _read_volume(f, part.offset, part_size)
        found.append((part, header.classify_header(part_head, part_size, part_blocks)))
    return header.combine_partitions(table, found)


def classify_path(path: str, probe: Probe | None = None) -> MediaReport:
    """Classify one block device or image file. Never raises for bad input: unreadable paths are `no-access`."""
    st, why = _stat_readable(path)
    if why:
        return _no_access(path, why)
    try:
        with open(path, "rb", buffering=0) as f:
            size = _volume_size(f, st)
            # Unknown size (some raw volumes cannot seek to their end): read what the header asks for anyway.
            finding = _classify_open(f, size if size is not None else sys.maxsize)
    except PermissionError:
        return _no_access(path, "permission denied (run as root/administrator to read devices)")
    except OSError as exc:
        return _no_access(path, f"cannot read: {exc.strerror or exc}")
    if probe is None:
        from agent.capture.media.host import probe as probe
    try:
        facts = probe(path, st)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        # The header verdict stands on its own; the OS details are a bonus, so their failure is only evidence.
        facts = OsFacts(evidence=[f"OS probe failed: {type(exc).__name__}"])
    return combine(path, finding, facts, size)
