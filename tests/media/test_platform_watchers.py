"""The Windows and macOS arrival watchers, run here with the OS's own calls replaced and nothing else.

What is faked: the notification source (a message window on Windows, a DiskArbitration run loop on macOS), the
drive listing (psutil.disk_partitions, the PowerShell bus probe, `diskutil list`). What runs for real: decoding
the bytes Windows hands the window procedure, the watcher's thread, settling, listing after events and reporting
each arrival once through classify_path.
"""

from __future__ import annotations

import ctypes
import queue
import struct
import threading
import uuid
from collections import namedtuple
from typing import ClassVar

import pytest

from agent.capture.media import watch_macos, watch_windows
from agent.capture.media.report import MediaReport
from agent.capture.media.verdict import OsFacts
from agent.capture.media.watch_windows import (
    DBT_DEVICEARRIVAL,
    DBT_DEVICEREMOVECOMPLETE,
    DBT_DEVTYP_DEVICEINTERFACE,
    DBT_DEVTYP_VOLUME,
    WM_DEVICECHANGE,
    DeviceChangeWindow,
    WindowsWatcher,
    hints_from_broadcast,
    letters_from_unitmask,
)

DEADLINE_S = 15
DBT_DEVNODES_CHANGED = 0x0007
DBT_QUERYREMOVE = 0x8001
DBT_DEVTYP_PORT = 0x0003
GUID_DEVINTERFACE_USB_DEVICE = uuid.UUID("a5dcbf10-6530-11d2-901f-00c04fb951ed")
Partition = namedtuple("Partition", "device mountpoint fstype opts")


def volume_broadcast(unitmask: int, flags: int = 0) -> bytes:
    """DEV_BROADCAST_VOLUME as Windows lays it out: size, type, reserved, unit mask (DWORDs), flags (WORD)."""
    return struct.pack("<IIIIH", 18, DBT_DEVTYP_VOLUME, 0, unitmask, flags)


def interface_broadcast(guid: uuid.UUID, name: str = "\\\\?\\STORAGE#Volume#{x}") -> bytes:
    encoded = (name + "\0").encode("utf-16-le")
    return struct.pack("<III", 28 + len(encoded), DBT_DEVTYP_DEVICEINTERFACE, 0) + guid.bytes_le + encoded


# ---------------------------------------------------------------------------------------------- decoding


def test_unit_mask_bits_are_drive_letters():
    assert letters_from_unitmask(0) == []
    assert letters_from_unitmask(1 << 4) == ["E"]
    assert letters_from_unitmask(1 << 4 | 1 << 6 | 1 << 25) == ["E", "G", "Z"]


@pytest.mark.parametrize("event", [DBT_DEVICEARRIVAL, DBT_DEVICEREMOVECOMPLETE])
def test_volume_broadcasts_name_their_letters(event):
    assert hints_from_broadcast(event, volume_broadcast(1 << 5)) == ["F"]


def test_volume_interface_events_count_but_name_no_letter():
    assert hints_from_broadcast(DBT_DEVICEARRIVAL, interface_broadcast(watch_windows.GUID_DEVINTERFACE_VOLUME)) == []


@pytest.mark.parametrize(
    ("event", "broadcast"),
    [
        (DBT_DEVNODES_CHANGED, volume_broadcast(1 << 4)),
        (DBT_QUERYREMOVE, volume_broadcast(1 << 4)),
        (DBT_DEVICEARRIVAL, interface_broadcast(GUID_DEVINTERFACE_USB_DEVICE)),
        (DBT_DEVICEARRIVAL, struct.pack("<III", 12, DBT_DEVTYP_PORT, 0)),
        (DBT_DEVICEARRIVAL, volume_broadcast(1 << 4)[:10]),
    ],
    ids=["devnodes-changed", "query-remove", "usb-interface", "port", "truncated"],
)
def test_other_device_messages_are_not_volume_events(event, broadcast):
    assert hints_from_broadcast(event, broadcast) is None


def test_window_procedure_reads_the_broadcast_at_lparam():
    """The bytes sit in memory as Windows would pass them; the procedure reads them through the pointer."""
    notified: list[list[str]] = []
    window = DeviceChangeWindow(notified.append)
    arrival = ctypes.create_string_buffer(volume_broadcast(1 << 4 | 1 << 7), 18)
    assert window.on_message(0, WM_DEVICECHANGE, DBT_DEVICEARRIVAL, ctypes.addressof(arrival)) == 1
    other = ctypes.create_string_buffer(interface_broadcast(GUID_DEVINTERFACE_USB_DEVICE))
    assert window.on_message(0, WM_DEVICECHANGE, DBT_DEVICEARRIVAL, ctypes.addressof(other)) == 1
    assert window.on_message(0, WM_DEVICECHANGE, DBT_DEVNODES_CHANGED, 0) == 1
    assert notified == [["E", "H"]]


# ---------------------------------------------------------------------------------------------- the watchers


class FakeEventSource:
    """Stands in for the OS notification source: the test calls `fire`, as the OS thread would call notify."""

    instances: ClassVar[list[FakeEventSource]] = []
    fail_with: ClassVar[OSError | None] = None

    def __init__(self, notify):
        self.notify = notify
        self.stopped = threading.Event()
        self.died = threading.Event()
        FakeEventSource.instances.append(self)

    def start(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def stop(self) -> None:
        self.stopped.set()

    def is_alive(self) -> bool:
        return not self.died.is_set()

    def fire(self, hints: list[str]) -> None:
        threading.Thread(target=self.notify, args=(hints,)).start()  # from another thread, like the OS's


class FailingEventSource(FakeEventSource):
    fail_with = OSError(1400, "CreateWindowExW failed: Invalid window handle.")


class Reports:
    def __init__(self) -> None:
        self.all: list[MediaReport] = []
        self.arrivals: queue.Queue[MediaReport] = queue.Queue()

    def __call__(self, report: MediaReport) -> None:
        self.all.append(report)
        self.arrivals.put(report)

    def next(self) -> MediaReport:
        return self.arrivals.get(timeout=DEADLINE_S)


class FakeDrives:
    """psutil.disk_partitions and the PowerShell bus probe of a Windows PC whose drives the test plugs in."""

    def __init__(self) -> None:
        self.partitions = {"C": Partition("C:\\", "C:\\", "NTFS", "rw,fixed")}
        self.bus = {"C": "NVMe"}
        self.probed: list[str] = []

    def plug(self, letter: str, fstype: str, opts: str, bus: str) -> None:
        self.bus[letter] = bus
        self.partitions[letter] = Partition(f"{letter}:\\", f"{letter}:\\", fstype, opts)

    def disk_partitions(self, all: bool = False) -> list[Partition]:
        return list(self.partitions.values())

    def probe(self, path: str, st) -> OsFacts:
        self.probed.append(path)
        return OsFacts(bus=self.bus[path[0]], removable=self.bus[path[0]] in ("USB", "SD", "MMC"))


@pytest.fixture
def drives(monkeypatch) -> FakeDrives:
    fake = FakeDrives()
    monkeypatch.setattr(watch_windows.psutil, "disk_partitions", fake.disk_partitions)
    monkeypatch.setattr(watch_windows.probe_windows, "probe", fake.probe)
    FakeEventSource.instances.clear()
    return fake


def windows_watcher(reports: Reports, source: type = FakeEventSource) -> WindowsWatcher:
    watcher = WindowsWatcher(reports, report_present=False, settle_s=0.1)
    watcher.event_source_class = source
    return watcher.start()


def test_windows_usb_stick_and_usb_hard_disk_are_reported_once_each_on_notification(drives):
    reports = Reports()
    watcher = windows_watcher(reports)
    try:
        assert watcher.backend == "windows-devicechange"
        (source,) = FakeEventSource.instances
        drives.plug("E", "FAT32", "rw,removable", bus="USB")
        drives.plug("F", "NTFS", "rw,fixed", bus="USB")  # a USB hard disk: Windows calls it fixed
        drives.plug("G", "NTFS", "rw,fixed", bus="SATA")  # a second internal disk: never reported
        source.fire(["E"])
        source.fire([])  # the volume interface arrival of the USB disk names no letter
        assert sorted([reports.next().path, reports.next().path]) == ["\\\\.\\E:", "\\\\.\\F:"]
        source.fire(["E"])  # Windows repeats itself; the stick is still the same stick
        assert watcher.wait_idle(DEADLINE_S)
        assert sorted(r.path for r in reports.all) == ["\\\\.\\E:", "\\\\.\\F:"]
        assert "E:" not in drives.probed  # Windows says removable: no PowerShell start needed
    finally:
        watcher.stop()
    assert FakeEventSource.instances[0].stopped.is_set()


def test_windows_does_not_list_drives_without_a_notification(drives):
    reports = Reports()
    watcher = windows_watcher(reports)
    try:
        drives.plug("E", "FAT32", "rw,removable", bus="USB")
        assert watcher.wait_idle(DEADLINE_S)
        assert reports.all == []  # no event, no listing: the 2 s poll is off while notifications work
        FakeEventSource.instances[0].fire(["E"])
        assert reports.next().path == "\\\\.\\E:"
    finally:
        watcher.stop()


def test_windows_letter_assigned_after_the_notification_is_still_found(drives):
    reports = Reports()
    watcher = windows_watcher(reports)
    try:
        FakeEventSource.instances[0].fire([])  # the interface arrives before the mount manager gives a letter
        assert watcher.wait_idle(DEADLINE_S)
        drives.plug("E", "exFAT", "rw,removable", bus="USB")
        assert reports.next().path == "\\\\.\\E:"
    finally:
        watcher.stop()


def test_windows_stick_plugged_in_again_is_checked_again(drives):
    reports = Reports()
    watcher = windows_watcher(reports)
    try:
        source = FakeEventSource.instances[0]
        drives.plug("E", "FAT32", "rw,removable", bus="USB")
        source.fire(["E"])
        assert reports.next().path == "\\\\.\\E:"
        del drives.partitions["E"]
        source.fire(["E"])
        assert watcher.wait_idle(DEADLINE_S)
        drives.plug("E", "FAT32", "rw,removable", bus="USB")
        source.fire(["E"])
        assert reports.next().path == "\\\\.\\E:"
    finally:
        watcher.stop()


def test_windows_falls_back_to_polling_when_the_window_cannot_start(drives):
    reports = Reports()
    watcher = windows_watcher(reports, source=FailingEventSource)
    try:
        assert watcher.backend == "windows-poll"
        drives.plug("E", "FAT32", "rw,removable", bus="USB")
        assert reports.next().path == "\\\\.\\E:"  # found by the 2 s poll with no event at all
    finally:
        watcher.stop()


def test_windows_polls_when_the_message_loop_ends(drives):
    reports = Reports()
    watcher = windows_watcher(reports)
    try:
        assert watcher.backend == "windows-devicechange"
        FakeEventSource.instances[0].died.set()
        drives.plug("E", "FAT32", "rw,removable", bus="USB")
        assert reports.next().path == "\\\\.\\E:"  # no event will come: the 2 s poll finds it
        assert watcher.backend == "windows-poll"
    finally:
        watcher.stop()


def test_mac_description_hints():
    assert watch_macos.hints_from_description("disk4s1", False) == ["disk4s1"]
    assert watch_macos.hints_from_description("disk4", None) == ["disk4"]
    assert watch_macos.hints_from_description("disk0s2", True) is None
    assert watch_macos.hints_from_description(None, False) is None


def test_mac_callback_passes_on_external_disks_only():
    class FakeFramework:
        def describe(self, disk):
            return {1: ("disk4s1", False), 2: ("disk0s1", True), 3: (None, None)}[disk]

    notified: list[list[str]] = []
    listener = watch_macos.DiskArbitrationListener(notified.append)
    listener._api = FakeFramework()
    for disk in (1, 2, 3, 99):  # 99: a description that cannot be read must not escape into the framework
        listener.on_disk(disk, 0)
    assert notified == [["disk4s1"]]


class FakeDiskutil:
    def __init__(self) -> None:
        self.disks: list[dict] = []

    def __call__(self, *args: str) -> dict:
        assert args == ("list", "-plist", "external")
        return {"AllDisksAndPartitions": list(self.disks)}


def test_mac_external_disk_is_reported_once_on_diskarbitration_events(monkeypatch):
    diskutil = FakeDiskutil()
    monkeypatch.setattr(watch_macos, "diskutil_plist", diskutil)
    FakeEventSource.instances.clear()
    reports = Reports()
    watcher = watch_macos.MacWatcher(reports, report_present=False, settle_s=0.1)
    watcher.event_source_class = FakeEventSource
    watcher.start()
    try:
        assert watcher.backend == "diskarbitration"
        diskutil.disks.append({"DeviceIdentifier": "disk4", "Size": 100,
                               "Partitions": [{"DeviceIdentifier": "disk4s1", "Size": 90}]})
        source = FakeEventSource.instances[0]
        source.fire(["disk4"])
        source.fire(["disk4s1"])
        assert reports.next().path == "/dev/disk4s1"
        assert watcher.wait_idle(DEADLINE_S)
        assert [r.path for r in reports.all] == ["/dev/disk4s1"]
    finally:
        watcher.stop()


def test_mac_falls_back_to_polling_diskutil(monkeypatch):
    diskutil = FakeDiskutil()
    monkeypatch.setattr(watch_macos, "diskutil_plist", diskutil)
    reports = Reports()
    watcher = watch_macos.MacWatcher(reports, report_present=False, settle_s=0.1)
    watcher.event_source_class = FailingEventSource
    watcher.start()
    try:
        assert watcher.backend == "diskutil-poll"
        diskutil.disks.append({"DeviceIdentifier": "disk5", "Size": 300})
        assert reports.next().path == "/dev/disk5"
    finally:
        watcher.stop()


def test_the_real_framework_is_refused_cleanly_off_macos():
    """Off macOS the frameworks are missing: the listener must say so as an OSError, which means 'poll'."""
    import sys

    if sys.platform == "darwin":
        pytest.skip("the framework exists here")
    listener = watch_macos.DiskArbitrationListener(lambda hints: None)
    with pytest.raises(OSError, match="DiskArbitration"):
        listener.start()


def test_the_real_window_is_refused_cleanly_off_windows():
    import sys

    if sys.platform == "win32":
        pytest.skip("user32 exists here")
    window = DeviceChangeWindow(lambda hints: None)
    with pytest.raises(OSError):
        window.start()
