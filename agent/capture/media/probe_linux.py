"""Linux: what blkid, sysfs and (when running) udev say about a block device or image file."""

from __future__ import annotations

import glob
import os
import stat
import subprocess
from pathlib import Path

from agent.capture.media.report import BITLOCKER, LUKS1, LUKS2
from agent.capture.media.verdict import OsFacts

SYS_BLOCK = Path("/sys/class/block")
BLKID_TIMEOUT_S = 10
_SECTOR = 512


def read_sys(path: Path) -> str | None:
    """A sysfs attribute, stripped; None when the device has no such attribute."""
    try:
        return path.read_text(errors="replace").strip() or None
    except OSError:
        return None


def kernel_name(st: os.stat_result) -> str | None:
    """The kernel name (sdb1, loop3) of a block device node, from its major:minor."""
    link = Path(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
    try:
        return Path(os.readlink(link)).name
    except OSError:
        return None


def disk_of(name: str) -> str:
    """The whole disk a partition belongs to (sdb for sdb1); a disk is its own disk."""
    node = SYS_BLOCK / name
    if (node / "partition").exists():
        return node.resolve().parent.name
    return name


def partitions_of(disk: str) -> list[str]:
    node = SYS_BLOCK / disk
    return sorted(p.name for p in node.resolve().iterdir() if (p / "partition").exists()) if node.exists() else []


def size_bytes(name: str) -> int:
    sectors = read_sys(SYS_BLOCK / name / "size")
    return int(sectors) * _SECTOR if sectors and sectors.isdigit() else 0


def loop_backing_file(name: str) -> str | None:
    return read_sys(SYS_BLOCK / name / "loop" / "backing_file")


def loops_backed_by(path: str) -> list[str]:
    """Loop devices whose backing file is `path` (so an image attached with losetup can be seen as open)."""
    real = os.path.realpath(path)
    return sorted(
        Path(d).name
        for d in glob.glob(str(SYS_BLOCK / "loop*"))
        if (loop_backing_file(Path(d).name) or "").removesuffix(" (deleted)") == real
    )


def open_crypt_mappings(names: list[str]) -> list[str]:
    """dm-crypt mappings (their dm names) whose underlying device is one of `names`: the volume is unlocked."""
    found = []
    for dm in glob.glob("/sys/block/dm-*"):
        uuid = read_sys(Path(dm) / "dm" / "uuid") or ""
        if not uuid.startswith("CRYPT-"):
            continue
        slaves = set(os.listdir(Path(dm) / "slaves")) if (Path(dm) / "slaves").is_dir() else set()
        if slaves & set(names):
            found.append(read_sys(Path(dm) / "dm" / "name") or Path(dm).name)
    return found


def bus_of(disk: str) -> str | None:
    real = str((SYS_BLOCK / disk).resolve())
    for marker, bus in (("/usb", "usb"), ("/mmc", "mmc"), ("/virtual/", "virtual"), ("/ata", "ata"), ("/nvme", "nvme")):
        if marker in real:
            return bus
    return None


def is_removable_media(name: str, include_loop: bool = False) -> bool:
    """Whether a kernel block device is a volume the school policy covers: USB, removable, SD card (or a loop)."""
    disk = disk_of(name)
    if disk.startswith("loop"):
        return include_loop and loop_backing_file(disk) is not None
    if disk.startswith(("dm-", "zram", "ram", "md", "nbd", "sr")):
        return False
    if disk.startswith("mmcblk"):
        # Internal eMMC shares the mmcblk name with SD cards; only the card type is removable media.
        return read_sys(SYS_BLOCK / disk / "device" / "type") == "SD"
    return bus_of(disk) == "usb" or read_sys(SYS_BLOCK / disk / "removable") == "1"


def _usb_device_dir(disk: str) -> Path | None:
    """The USB device directory above a disk in sysfs: it holds the stick's serial, vendor and product."""
    node = (SYS_BLOCK / disk / "device").resolve() if (SYS_BLOCK / disk / "device").exists() else None
    while node is not None and node != node.parent:
        if (node / "idVendor").exists():
            return node
        node = node.parent
    return None


def _device_details(name: str, facts: OsFacts) -> None:
    disk = disk_of(name)
    facts.device = name
    facts.size_bytes = size_bytes(name)
    facts.bus = bus_of(disk)
    facts.removable = read_sys(SYS_BLOCK / disk / "removable") == "1"
    facts.vendor = read_sys(SYS_BLOCK / disk / "device" / "vendor")
    facts.model = read_sys(SYS_BLOCK / disk / "device" / "model")
    usb = _usb_device_dir(disk)
    if usb is not None:
        facts.serial = read_sys(usb / "serial")
        facts.vendor = facts.vendor or read_sys(usb / "manufacturer")
        facts.model = facts.model or read_sys(usb / "product")
    _udev_details(name, facts)


def _udev_details(name: str, facts: OsFacts) -> None:
    """udev's database has the cleanest serial; it exists only where udevd runs (not in most containers)."""
    if not os.path.exists("/run/udev/control"):
        return
    try:
        import pyudev

        props = pyudev.Devices.from_name(pyudev.Context(), "block", name).properties
    except Exception:  # pyudev missing, or the device left between events: sysfs details stand
        return
    facts.serial = props.get("ID_SERIAL_SHORT") or facts.serial
    facts.vendor = props.get("ID_VENDOR") or facts.vendor
    facts.model = props.get("ID_MODEL") or facts.model
    facts.bus = props.get("ID_BUS") or facts.bus
    if props.get("ID_FS_TYPE") and not facts.filesystem:
        facts.filesystem = props["ID_FS_TYPE"]
        facts.evidence.append(f"udev: ID_FS_TYPE={facts.filesystem}")


_BLKID_SCHEMES = {"crypto_LUKS": None, "BitLocker": BITLOCKER}


def blkid_facts(path: str, facts: OsFacts) -> None:
    """Low-level probe with `blkid -p` (never its cache): TYPE, VERSION, PTTYPE."""
    try:
        done = subprocess.run(
            ["blkid", "-p", "-o", "export", path], capture_output=True, text=True, timeout=BLKID_TIMEOUT_S
        )
    except FileNotFoundError:
        facts.evidence.append("blkid not installed")
        return
    except subprocess.TimeoutExpired:
        facts.evidence.append(f"blkid timed out after {BLKID_TIMEOUT_S}s")
        return
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    fs_type, pt_type = values.get("TYPE"), values.get("PTTYPE")
    if fs_type:
        facts.filesystem = fs_type
        version = f" VERSION={values['VERSION']}" if "VERSION" in values else ""
        facts.evidence.append(f"blkid: TYPE={fs_type}{version}")
        if fs_type in _BLKID_SCHEMES:
            facts.encrypted = True
            facts.scheme = _BLKID_SCHEMES[fs_type] or (LUKS2 if values.get("VERSION") == "2" else LUKS1)
    elif pt_type:
        facts.evidence.append(f"blkid: PTTYPE={pt_type}")
    elif done.returncode == 2:
        facts.evidence.append("blkid: no known signature")


def probe(path: str, st: os.stat_result | None) -> OsFacts:
    facts = OsFacts()
    blkid_facts(path, facts)
    if st is not None and stat.S_ISBLK(st.st_mode):
        name = kernel_name(st)
        if name:
            _device_details(name, facts)
            underlying = [name]
            backing = loop_backing_file(name)
            if backing:
                facts.evidence.append(f"loop device backed by {backing}")
        else:
            underlying = []
    else:
        underlying = loops_backed_by(path)
        if underlying:
            facts.evidence.append(f"attached as /dev/{', /dev/'.join(underlying)}")
    mappings = open_crypt_mappings(underlying)
    if mappings:
        facts.unlocked = True
        facts.evidence.append(f"dm-crypt mapping open: {', '.join(mappings)}")
    return facts
