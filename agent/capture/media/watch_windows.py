"""Windows arrivals: drive letters polled every 2 s, kept when the bus is USB/SD/MMC or the drive is removable.

USB hard disks report as fixed drives, so the bus type from Storage WMI decides, not only the drive type.
A WM_DEVICECHANGE listener inside the service would cut the 2 s delay; polling is the documented fallback and
needs no window or message loop.
"""

from __future__ import annotations

from collections.abc import Hashable

import psutil

from agent.capture.media import probe_windows
from agent.capture.media.watch_base import Volume
from agent.capture.media.watch_poll import PollingWatcher


class WindowsWatcher(PollingWatcher):
    backend = "windows-poll"

    def _mounted(self) -> dict[str, Hashable]:
        found: dict[str, Hashable] = {}
        for part in psutil.disk_partitions(all=False):
            letter = probe_windows.drive_letter(part.device)
            if letter is None:
                continue
            removable = "removable" in part.opts.split(",")
            if not removable:
                facts = probe_windows.probe(f"{letter}:", None)
                removable = bool(facts.removable)
            if removable:
                found[letter] = (part.fstype, part.mountpoint)
        return found

    def _volumes(self, disk: str) -> list[Volume]:
        identity = self._snapshot.get(disk)
        return [Volume(f"\\\\.\\{disk}:", (disk, identity))] if identity is not None else []
