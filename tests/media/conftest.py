"""Real media images for the media tests, made with cryptsetup, the mkfs tools, tcplay and byte-exact writes."""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

MiB = 1 << 20
KEY = b"correct horse battery staple"
BITLOCKER_GUID = uuid.UUID("4967d63b-2e29-4ad8-8399-f6a339e3d001").bytes_le
FVE_OFFSETS = (1 * MiB, 2 * MiB, 3 * MiB)


def need_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (installed by .ci/run)")


def run(*cmd: str | Path) -> str:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, timeout=120).stdout


def blank(path: Path, size: int = 24 * MiB) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def make_luks(path: Path, luks_type: str) -> Path:
    need_tools("cryptsetup")
    blank(path)
    key = path.with_suffix(".key")
    key.write_bytes(KEY)
    pbkdf = ["--pbkdf", "pbkdf2"] if luks_type == "luks2" else []
    run("cryptsetup", "luksFormat", "-q", "--type", luks_type, *pbkdf, "--pbkdf-force-iterations", "1000",
        "--key-file", key, path)
    return path


MKFS = {
    "vfat": ("mkfs.vfat", ["-F", "32"]),
    "exfat": ("mkfs.exfat", []),
    "ntfs": ("mkntfs", ["-F", "-q", "-Q"]),
    "ext4": ("mkfs.ext4", ["-q", "-F"]),
}


def make_fs(path: Path, fs: str, size: int = 40 * MiB) -> Path:
    tool, args = MKFS[fs]
    need_tools(tool)
    blank(path, size)
    run(tool, *args, path)
    return path


def make_bitlocker(path: Path, to_go: bool, fve_blocks: bool = True) -> Path:
    """A BitLocker boot sector in the Win7 or To Go layout, written byte by byte over a FAT image.

    Layout (libbde, cryptsetup BITLK): OEM id at 3 ('-FVE-FS-', or 'MSWIN4.1' for To Go), BitLocker GUID at
    160 / 424, three FVE metadata offsets (u64 LE) at 176 / 440; each FVE block starts '-FVE-FS-', size, version.
    """
    make_fs(path, "vfat", 24 * MiB)
    guid_at, offsets_at = (424, 440) if to_go else (160, 176)
    with open(path, "r+b") as f:
        f.write(b"\xeb\x58\x90" + (b"MSWIN4.1" if to_go else b"-FVE-FS-"))
        f.seek(guid_at)
        f.write(BITLOCKER_GUID)
        f.seek(offsets_at)
        f.write(struct.pack("<3Q", *FVE_OFFSETS))
        f.seek(510)
        f.write(b"\x55\xaa")
        if fve_blocks:
            for offset in FVE_OFFSETS:
                f.seek(offset)
                f.write(b"-FVE-FS-" + struct.pack("<HH", 0x40, 2))
    return path


def partitioned_image(tmp_path: Path, parts: list[Path], table: str) -> Path:
    """A disk image with `parts` copied in at 1 MiB-aligned partitions described by an sfdisk table."""
    need_tools("sfdisk")
    disk = blank(tmp_path / f"disk-{table}.img", (2 + sum(p.stat().st_size for p in parts) // MiB + 1) * MiB)
    lines, start = [f"label: {table}"], MiB
    for part in parts:
        lines.append(f"start={start // 512}, size={part.stat().st_size // 512}")
        start += part.stat().st_size
    subprocess.run(["sfdisk", "-q", str(disk)], input="\n".join(lines) + "\n", text=True, check=True,
                   capture_output=True, timeout=60)
    with open(disk, "r+b") as out:
        start = MiB
        for part in parts:
            out.seek(start)
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out)
            start += part.stat().st_size
    return disk


def random_image(path: Path, size: int = 16 * MiB) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def losetup_reason() -> str | None:
    """Why loop devices cannot be used here, or None when they can."""
    if shutil.which("losetup") is None:
        return "losetup is not installed"
    if os.geteuid() != 0:
        return "attaching loop devices needs root"
    if not Path("/dev/loop-control").exists():
        return "/dev/loop-control is missing (no loop driver in this kernel or container)"
    return None


@contextmanager
def attached(image: Path) -> Iterator[str]:
    """The image attached to a free loop device; always detached again."""
    reason = losetup_reason()
    if reason:
        pytest.skip(reason)
    done = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"losetup -f --show failed: {done.stderr.strip()}")
    device = done.stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], capture_output=True, timeout=30)


def tcplay_create(device: str, timeout_s: float = 120) -> None:
    """Run `tcplay -c` on `device`; it reads the passphrase from a terminal only, so it gets a pseudo-terminal."""
    pid, fd = pty.fork()
    if pid == 0:  # child: becomes tcplay
        os.execvp("tcplay", ["tcplay", "-c", "-d", device, "-a", "SHA512", "-b", "AES-256-XTS", "-w"])
    transcript, prompts_answered, confirmed = "", 0, False
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal: it has finished
                break
            if not chunk:
                break
            transcript += chunk.decode(errors="replace")
            if transcript.count("assphrase:") > prompts_answered:
                os.write(fd, KEY + b"\n")
                prompts_answered += 1
            if "(y/n)" in transcript and not confirmed:
                os.write(fd, b"y\n")
                confirmed = True
    finally:
        reaped, status = os.waitpid(pid, os.WNOHANG)
        if reaped == 0:  # still running after the deadline
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    if os.waitstatus_to_exitcode(status) != 0:
        pytest.fail(f"tcplay -c failed: {transcript[-300:]}")
