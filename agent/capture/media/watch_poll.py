"""The portable fallback watcher: a psutil.disk_partitions() diff every 2 s (mounted volumes only), and the
same diff driven by OS volume notifications where a platform has them (Windows, macOS)."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Hashable
from typing import Protocol

import psutil

from agent.capture.media.watch_base import POLL_INTERVAL_S, OnReport, Volume, VolumeWatcher

log = logging.getLogger(__name__)


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


RESCAN_AFTER_EVENT_S = 5.0


class VolumeEventSource(Protocol):
    """An OS notification source (a Windows message window, a DiskArbitration run loop) on its own thread."""

    def start(self) -> None:
        """Begin listening; raise OSError when the OS will not deliver events (the watcher then polls)."""

    def stop(self) -> None:
        """Stop listening and end the thread."""

    def is_alive(self) -> bool:
        """False once the source's thread has ended (its message loop failed)."""


class EventPollingWatcher(PollingWatcher):
    """Lists volumes when the OS says they changed, not every 2 s; polls every 2 s when the OS will not say.

    The notification names a device before the volume on it is usable (a drive letter or a mount comes a moment
    later), so each event starts a few seconds of listing at the base loop's pace instead of a single listing.
    Subclasses give `_event_source(notify)`; the source calls `notify(hints)` from its own thread, where `hints`
    are volume names the event already named (drive letters; may be empty).
    """

    poll_backend = "poll"
    event_backend = "events"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._events: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
        self._source: VolumeEventSource | None = None
        self._rescan_until = 0.0
        self.backend = self.poll_backend

    def _event_source(self, notify: Callable[[list[str]], None]) -> VolumeEventSource:
        raise NotImplementedError

    def _open(self) -> None:
        super()._open()
        try:
            source = self._event_source(self._events.put)
            source.start()
        except OSError as exc:  # no message window, no framework: arrivals are still found, 2 s later
            log.warning("media watcher: OS volume notifications unavailable (%s); polling every %ss", exc,
                        POLL_INTERVAL_S)
            return
        self._source = source
        self.backend = self.event_backend

    def _close(self) -> None:
        if self._source is not None:
            self._source.stop()
            self._source = None

    def _take_events(self, timeout: float) -> list[str] | None:
        """Hints of every event queued within `timeout` seconds; None when there was none."""
        try:
            hints = list(self._events.get(timeout=timeout))
        except queue.Empty:
            return None
        while True:
            try:
                hints.extend(self._events.get_nowait())
            except queue.Empty:
                return hints

    def _wait(self, timeout: float) -> list[str]:
        if self._source is not None and not self._source.is_alive():
            # Without this, a dead message loop would mean no arrival is ever noticed again, silently.
            log.warning("media watcher: OS volume notifications stopped; polling every %ss", POLL_INTERVAL_S)
            self._source = None
            self.backend = self.poll_backend
        if self._source is None:
            return super()._wait(timeout)
        hints = self._take_events(timeout)
        now = time.monotonic()
        if hints is not None:
            self._rescan_until = now + RESCAN_AFTER_EVENT_S
        elif now >= self._rescan_until:
            return []
        before, self._snapshot = self._snapshot, self._mounted()
        changed = {d for d in before.keys() | self._snapshot.keys() if before.get(d) != self._snapshot.get(d)}
        return sorted(changed | (set(hints or ()) & self._snapshot.keys()))
