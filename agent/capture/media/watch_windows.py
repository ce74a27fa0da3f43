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

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # Asking Storage WMI costs a PowerShell start; a fixed drive's bus does not change while it stays.
        self._bus_removable: dict[tuple[str, str], bool] = {}

    def _is_removable(self, letter: str, fstype: str, opts: str) -> bool:
        if "removable" in opts.split(","):
            return True
        key = (letter, fstype)
        if key not in self._bus_removable:
            self._bus_removable[key] = bool(probe_windows.probe(f"{letter}:", None).removable)
        return self._bus_removable[key]

    def _mounted(self) -> dict[str, Hashable]:
        found: dict[str, Hashable] = {}
        present = set()
        for part in psutil.disk_partitions(all=False):
            letter = probe_windows.drive_letter(part.device)
            if letter is None:
                continue
            present.add((letter, part.fstype))
            if self._is_removable(letter, part.fstype, part.opts):
                found[letter] = (part.fstype, part.mountpoint)
        # A letter reused by another drive must be asked about again.
        self._bus_removable = {k: v for k, v in self._bus_removable.items() if k in present}
        return found

    def _volumes(self, disk: str) -> list[Volume]:
        identity = self._snapshot.get(disk)
        return [Volume(f"\\\\.\\{disk}:", (disk, identity))] if identity is not None else []
