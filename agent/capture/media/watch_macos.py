"""macOS arrivals: `diskutil list -plist external` polled every 2 s.

DiskArbitration callbacks would need PyObjC, which the agent does not ship; polling diskutil is the fallback
the issue allows and sees unmounted (locked) volumes too, unlike a mount-table diff.
"""

from __future__ import annotations

from collections.abc import Hashable

from agent.capture.media.probe_macos import diskutil_plist
from agent.capture.media.watch_base import Volume
from agent.capture.media.watch_poll import PollingWatcher


def external_volumes(listing: dict) -> dict[str, Hashable]:
    """Volume identifiers (partitions, APFS volumes, or the bare disk) on external disks, with their sizes."""
    found: dict[str, Hashable] = {}
    for disk in listing.get("AllDisksAndPartitions", []):
        children = [*disk.get("Partitions", []), *disk.get("APFSVolumes", [])]
        for entry in children or [disk]:
            if entry.get("DeviceIdentifier"):
                found[entry["DeviceIdentifier"]] = entry.get("Size")
    return found


class MacWatcher(PollingWatcher):
    backend = "diskutil-poll"

    def _mounted(self) -> dict[str, Hashable]:
        return external_volumes(diskutil_plist("list", "-plist", "external"))

    def _volumes(self, disk: str) -> list[Volume]:
        identity = self._snapshot.get(disk)
        return [Volume(f"/dev/{disk}", (disk, identity))] if identity is not None else []
