"""The portable fallback watcher: a psutil.disk_partitions() diff every 2 s (mounted volumes only)."""

from __future__ import annotations

from collections.abc import Hashable

import psutil

from agent.capture.media.watch_base import POLL_INTERVAL_S, OnReport, Volume, VolumeWatcher


class PollingWatcher(VolumeWatcher):
    backend = "poll"

    def __init__(self, on_report: OnReport, include_loop: bool = False, report_present: bool = True,
                 **kwargs: float) -> None:
        super().__init__(on_report, include_loop=include_loop, report_present=report_present, **kwargs)
        self._snapshot: dict[str, Hashable] = {}

    def _mounted(self) -> dict[str, Hashable]:
        """Mounted removable volumes by device path; subclasses narrow or widen what counts as removable."""
        return {p.device: (p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=False)
                if "removable" in p.opts.split(",")}

    def _open(self) -> None:
        self._snapshot = self._mounted()

    def _present_disks(self) -> list[str]:
        return sorted(self._snapshot)

    def _wait(self, timeout: float) -> list[str]:
        if self._stop.wait(max(timeout, POLL_INTERVAL_S)):
            return []
        before, self._snapshot = self._snapshot, self._mounted()
        return [d for d in before.keys() | self._snapshot.keys() if before.get(d) != self._snapshot.get(d)]

    def _volumes(self, disk: str) -> list[Volume]:
        identity = self._snapshot.get(disk)
        return [Volume(disk, (disk, identity))] if identity is not None else []
