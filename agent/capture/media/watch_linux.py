"""Linux arrivals: udev events when udevd runs, raw kernel uevents when it does not, polling as the last resort."""

from __future__ import annotations

import contextlib
import logging
import os
import select
from collections.abc import Hashable
from pathlib import Path

import psutil

from agent.capture.media import probe_linux as sysfs
from agent.capture.media.watch_base import POLL_INTERVAL_S, OnReport, Volume, VolumeWatcher

log = logging.getLogger(__name__)
BACKENDS = ("udev", "kernel", "poll")


def _choose_backend() -> str:
    if os.path.exists("/run/udev/control"):
        return "udev"
    # Without udevd (containers, minimal images) root can still listen to the kernel's own uevents.
    return "kernel" if os.geteuid() == 0 else "poll"


class LinuxWatcher(VolumeWatcher):
    def __init__(
        self,
        on_report: OnReport,
        include_loop: bool = False,
        report_present: bool = True,
        backend: str | None = None,
        **kwargs: float,
    ) -> None:
        super().__init__(on_report, include_loop=include_loop, report_present=report_present, **kwargs)
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"unknown media watcher backend {backend!r} (choose from {', '.join(BACKENDS)})")
        self.backend = backend or _choose_backend()
        self._monitor = None
        self._snapshot: dict[str, Hashable] = {}
        self._wake_r = self._wake_w = -1

    # ---- event sources

    def _open(self) -> None:
        if self.backend == "poll":
            self._snapshot = self._poll_snapshot()
            return
        try:
            import pyudev

            monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source=self.backend)
            monitor.filter_by("block")
            monitor.start()
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except Exception as exc:  # no pyudev, no netlink permission: polling still catches arrivals
            log.warning("media watcher: %s events unavailable (%s); polling every %ss", self.backend, exc,
                        POLL_INTERVAL_S)
            self.backend = "poll"
            self._snapshot = self._poll_snapshot()
            return
        self._monitor = monitor
        self.idle_wait_s = 60.0  # events arrive on their own; stop and wait_idle wake the wait through the pipe

    def _close(self) -> None:
        self._monitor = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1

    def _interrupt(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):  # a full pipe already holds a wake-up
                os.write(self._wake_w, b"!")

    def _wait(self, timeout: float) -> list[str]:
        if self._monitor is None:
            return self._poll_changes(timeout)
        readable, _, _ = select.select([self._monitor.fileno(), self._wake_r], [], [], timeout)
        if self._wake_r in readable:
            with contextlib.suppress(OSError):
                os.read(self._wake_r, 4096)
        disks = []
        device = self._monitor.poll(timeout=0)
        while device is not None:
            disks.append(self._event_disk(device))
            device = self._monitor.poll(timeout=0)
        return [d for d in disks if d]

    def _event_disk(self, device) -> str | None:
        name = device.sys_name
        if device.device_type == "partition":
            parent = device.parent
            name = parent.sys_name if parent is not None else name
        if name in self._reported or sysfs.is_removable_media(name, self.include_loop):
            return name
        return None

    # ---- polling fallback: psutil's mounted volumes plus sysfs's unmounted sticks, diffed every 2 s

    def _poll_snapshot(self) -> dict[str, Hashable]:
        names = {p.name for p in sysfs.SYS_BLOCK.iterdir() if not (p / "partition").exists()}
        for part in psutil.disk_partitions(all=False):
            if part.device.startswith("/dev/"):
                names.add(sysfs.disk_of(Path(part.device).name))
        return {n: self._disk_identity(n) for n in names if sysfs.is_removable_media(n, self.include_loop)}

    def _poll_changes(self, timeout: float) -> list[str]:
        if self._stop.wait(max(timeout, POLL_INTERVAL_S)):
            return []
        before, self._snapshot = self._snapshot, self._poll_snapshot()
        return [n for n in before.keys() | self._snapshot.keys() if before.get(n) != self._snapshot.get(n)]

    # ---- what is on a disk

    def _disk_identity(self, name: str) -> Hashable:
        return (sysfs.size_bytes(name), sysfs.loop_backing_file(name), tuple(sysfs.partitions_of(name)))

    def _present_disks(self) -> list[str]:
        return sorted(
            p.name for p in sysfs.SYS_BLOCK.iterdir()
            if not (p / "partition").exists() and sysfs.is_removable_media(p.name, self.include_loop)
        )

    def _volumes(self, disk: str) -> list[Volume]:
        if not (sysfs.SYS_BLOCK / disk).exists() or not sysfs.is_removable_media(disk, self.include_loop):
            return []
        backing = sysfs.loop_backing_file(disk)
        volumes = []
        # A partitioned stick is checked partition by partition; the bare disk only when it has no table.
        for name in sysfs.partitions_of(disk) or [disk]:
            size = sysfs.size_bytes(name)
            if size > 0:
                volumes.append(Volume(f"/dev/{name}", (name, size, backing)))
        return volumes
