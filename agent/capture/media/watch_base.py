"""Arrival watchers: the shared machinery (thread, settling, one report per volume) and `start_watcher`.

A stick's arrival is a flood of events (disk added, partitions added, several changes). Events only mark a disk
as dirty; once a disk has been quiet for `settle_s`, its volumes are listed and each volume not yet reported is
classified once. A volume is forgotten when it leaves, so the same stick plugged in again is checked again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

from agent.capture.media.classify import classify_path
from agent.capture.media.report import MediaReport

log = logging.getLogger(__name__)

OnReport = Callable[[MediaReport], None]
SETTLE_S = 1.0
POLL_INTERVAL_S = 2.0


class Volume:
    """A volume to classify: its path, and a key that changes when different media appear under the same name."""

    __slots__ = ("key", "path")

    def __init__(self, path: str, key: Hashable) -> None:
        self.path = path
        self.key = key


class VolumeWatcher:
    """Base for platform watchers. Subclasses implement `_wait(timeout)`, `_present_disks()` and `_volumes(disk)`."""

    backend = "base"
    # How long the loop waits for an event while nothing is settling. Waking only to look at the stop flag costs
    # an idle PC CPU for nothing, so a platform whose wait `_interrupt` can cut short waits much longer.
    idle_wait_s = 0.5

    def __init__(
        self,
        on_report: OnReport,
        include_loop: bool = False,
        report_present: bool = True,
        settle_s: float = SETTLE_S,
    ) -> None:
        self.on_report = on_report
        self.include_loop = include_loop
        self.report_present = report_present
        self.settle_s = settle_s
        self._reported: dict[str, set[Hashable]] = {}  # disk -> keys of its volumes already reported
        self._dirty: dict[str, float] = {}  # disk -> monotonic time of its last event
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cycle_done = threading.Condition()
        self.cycles = 0  # completed passes of the event loop; `wait_idle` counts these instead of sleeping

    # ---- what a platform provides

    def _open(self) -> None:
        """Set up the event source (called in the caller's thread so that setup errors surface at start)."""

    def _close(self) -> None:
        """Release the event source."""

    def _wait(self, timeout: float) -> list[str]:
        """Block up to `timeout` seconds; return the disks that had an event (may repeat, may be empty)."""
        raise NotImplementedError

    def _interrupt(self) -> None:
        """End a `_wait` in progress early (for stop and wait_idle); platforms that cannot keep idle_wait_s short."""

    def _present_disks(self) -> list[str]:
        """Disks of removable media present now."""
        raise NotImplementedError

    def _volumes(self, disk: str) -> list[Volume]:
        """The volumes on `disk` to classify now (empty when the disk has gone or has no media)."""
        raise NotImplementedError

    # ---- shared machinery

    def start(self) -> VolumeWatcher:
        self._open()
        if self.report_present:
            now = time.monotonic()
            for disk in self._present_disks():
                self._dirty[disk] = now - self.settle_s
        self._thread = threading.Thread(target=self._run, name=f"media-watch-{self.backend}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._interrupt()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every event that happened before this call has been handled (False on timeout).

        The pass running now may have started before those events; the one after it cannot have, so two
        completed passes with nothing left to settle means caught up.
        """
        deadline = time.monotonic() + timeout
        with self._cycle_done:
            target = self.cycles + 2
            while self.cycles < target or self._dirty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._interrupt()  # a long idle wait would otherwise hold the passes back
                self._cycle_done.wait(min(remaining, 0.2))
            return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for disk in self._wait(self._next_timeout()):
                    self._dirty[disk] = time.monotonic()
                self._examine_settled()
                with self._cycle_done:
                    self.cycles += 1
                    self._cycle_done.notify_all()
            except Exception:  # one bad device must not end arrival checks for the whole session
                log.exception("media watcher (%s) failed while handling an event; carrying on", self.backend)
                self._stop.wait(POLL_INTERVAL_S)

    def _next_timeout(self) -> float:
        if not self._dirty:
            return self.idle_wait_s
        oldest = min(self._dirty.values())
        return max(0.05, min(0.5, oldest + self.settle_s - time.monotonic()))

    def _examine_settled(self) -> None:
        now = time.monotonic()
        for disk in [d for d, at in self._dirty.items() if now - at >= self.settle_s]:
            del self._dirty[disk]  # first, so a device that always fails is not retried in a tight loop
            self._examine(disk)

    def _examine(self, disk: str) -> None:
        volumes = self._volumes(disk)
        current = {v.key for v in volumes}
        seen = self._reported.setdefault(disk, set())
        seen &= current  # volumes that left are forgotten, so they are checked again when they return
        for volume in volumes:
            if volume.key in seen:
                continue
            seen.add(volume.key)
            report = classify_path(volume.path)
            log.info("removable volume %s: %s (%s)", volume.path, report.state, report.scheme)
            try:
                self.on_report(report)
            except Exception:  # the caller's bug must not stop the next volume from being checked
                log.exception("media report handler failed for %s", volume.path)
        if not seen:
            del self._reported[disk]


def start_watcher(
    on_report: OnReport,
    include_loop: bool = False,
    report_present: bool = True,
    backend: str = "auto",
) -> VolumeWatcher:
    """Start this platform's watcher in its own thread; `on_report` is called once per arriving volume.

    `include_loop` also watches Linux loop devices (tests attach images with losetup). `report_present` also
    reports the media present at start. `backend` picks a Linux event source: "auto", "udev", "kernel" or "poll".
    """
    from agent.capture.media.host import watcher_class

    cls = watcher_class()
    kwargs: dict[str, object] = {"include_loop": include_loop, "report_present": report_present}
    if backend != "auto":
        kwargs["backend"] = backend
    return cls(on_report, **kwargs).start()
