"""The arrival watcher on Linux: attach an image with losetup, expect exactly one report with the right state."""

from __future__ import annotations

import queue
import subprocess
from pathlib import Path

import pytest

from agent.capture.media import MediaReport, start_watcher
from agent.capture.media.watch_linux import LinuxWatcher
from tests.media.conftest import MiB, attached, losetup_reason, make_fs, make_luks, partitioned_image

pytestmark = pytest.mark.media
ARRIVAL_DEADLINE_S = 30


def _kernel_events_reason() -> str | None:
    try:
        import pyudev

        monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="kernel")
        monitor.start()
    except Exception as exc:
        return f"kernel uevents cannot be read here: {exc}"
    return None


class Collector:
    """Every report in order, plus a queue to wait on without sleeping."""

    def __init__(self) -> None:
        self.all: list[MediaReport] = []
        self.arrivals: queue.Queue[MediaReport] = queue.Queue()

    def __call__(self, report: MediaReport) -> None:
        self.all.append(report)
        self.arrivals.put(report)

    def next_for(self, device: str) -> MediaReport:
        """The next report for `device`; other engineers' loop devices may report too, and are skipped."""
        while True:
            report = self.arrivals.get(timeout=ARRIVAL_DEADLINE_S)
            if report.path == device:
                return report

    def count_for(self, device: str) -> int:
        return sum(r.path == device for r in self.all)


@pytest.mark.parametrize("backend", ["auto", "poll"])
def test_attached_image_is_reported_exactly_once(tmp_path, backend):
    reason = losetup_reason() or (_kernel_events_reason() if backend == "auto" else None)
    if reason:
        pytest.skip(reason)
    image = make_luks(tmp_path / "stick.img", "luks2")
    reports = Collector()
    watcher = start_watcher(reports, include_loop=True, report_present=False, backend=backend)
    try:
        with attached(image) as device:
            report = reports.next_for(device)
            assert (report.state, report.scheme, report.device) == ("encrypted-locked", "luks2", Path(device).name)
            # More events for the same medium (a capacity re-read) must not produce a second report.
            subprocess.run(["losetup", "-c", device], check=True, timeout=30)
            assert watcher.wait_idle(ARRIVAL_DEADLINE_S)
            assert reports.count_for(device) == 1
    finally:
        watcher.stop()


def test_same_device_name_with_new_media_is_reported_again(tmp_path):
    reason = losetup_reason()
    if reason:
        pytest.skip(reason)
    plain = make_fs(tmp_path / "plain.img", "vfat")
    luks = make_luks(tmp_path / "luks.img", "luks1")
    reports = Collector()
    watcher = start_watcher(reports, include_loop=True, report_present=False)
    try:
        with attached(plain) as device:
            assert reports.next_for(device).state == "not-encrypted"
        assert watcher.wait_idle(ARRIVAL_DEADLINE_S)  # the detach has been seen, so the volume is forgotten
        with attached(luks) as device2:
            assert reports.next_for(device2).state == "encrypted-locked"
    finally:
        watcher.stop()


def test_present_media_are_reported_at_start_when_asked(tmp_path):
    reason = losetup_reason()
    if reason:
        pytest.skip(reason)
    image = make_fs(tmp_path / "plain.img", "exfat")
    with attached(image) as device:
        reports = Collector()
        watcher = start_watcher(reports, include_loop=True, report_present=True)
        try:
            report = reports.next_for(device)
            assert (report.state, report.filesystem) == ("not-encrypted", "exfat")
        finally:
            watcher.stop()


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown media watcher backend 'dbus'"):
        LinuxWatcher(lambda report: None, backend="dbus")


def test_partitioned_stick_is_one_report_not_one_per_partition_event(tmp_path):
    reason = losetup_reason()
    if reason:
        pytest.skip(reason)
    disk = partitioned_image(tmp_path, [make_luks(tmp_path / "p1.img", "luks2"),
                                        make_fs(tmp_path / "p2.img", "vfat", 34 * MiB)], "dos")
    reports = Collector()
    watcher = start_watcher(reports, include_loop=True, report_present=False)
    try:
        with attached(disk) as device:
            report = reports.next_for(device)
            assert report.state == "not-encrypted"  # the plain partition decides
            assert "dos partition table with 2 partition(s)" in report.evidence
            assert watcher.wait_idle(ARRIVAL_DEADLINE_S)
            assert reports.count_for(device) == 1
    finally:
        watcher.stop()
