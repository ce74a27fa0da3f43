"""macOS arrivals: DiskArbitration callbacks on a CFRunLoop of their own, with `diskutil list` polled as fallback.

DiskArbitration and CoreFoundation are called through ctypes (the agent ships no PyObjC). The callback only reads
the disk's BSD name and whether it is internal from its description and hands the name on; what is on the disk is
read by `diskutil list -plist external`, which also sees unmounted (locked) volumes, unlike a mount-table diff.
DiskArbitration announces every disk already present when a session starts; those events find nothing new.

The ctypes calls live in `DiskArbitrationListener` and run only on macOS; `hints_from_description` and the
watcher around them are plain code, tested everywhere.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable

from agent.capture.media.probe_macos import diskutil_plist
from agent.capture.media.watch_base import Volume
from agent.capture.media.watch_poll import EventPollingWatcher

log = logging.getLogger(__name__)

CORE_FOUNDATION = "/System/Library/Frameworks/CoreFoundation.framework/CoreFoundation"
DISK_ARBITRATION = "/System/Library/Frameworks/DiskArbitration.framework/DiskArbitration"
K_CF_STRING_ENCODING_UTF8 = 0x08000100
RUN_LOOP_SLICE_S = 2.0  # the run loop is also stopped at once by CFRunLoopStop; the slice only bounds a race
LISTENER_START_TIMEOUT_S = 10.0


def external_volumes(listing: dict) -> dict[str, Hashable]:
    """Volume identifiers (partitions, APFS volumes, or the bare disk) on external disks, with their sizes."""
    found: dict[str, Hashable] = {}
    for disk in listing.get("AllDisksAndPartitions", []):
        children = [*disk.get("Partitions", []), *disk.get("APFSVolumes", [])]
        for entry in children or [disk]:
            if entry.get("DeviceIdentifier"):
                found[entry["DeviceIdentifier"]] = entry.get("Size")
    return found


def hints_from_description(bsd_name: str | None, internal: bool | None) -> list[str] | None:
    """What a disk-appeared/disappeared callback passes on: None for internal disks (never watched) and for
    descriptions without a BSD name (no device node to read); else the name, e.g. ['disk4s1']."""
    if internal or not bsd_name:
        return None
    return [bsd_name]


class DiskArbitrationListener:
    """A DASession scheduled on a CFRunLoop in its own thread, calling `notify([bsd_name])` per external disk."""

    def __init__(self, notify: Callable[[list[str]], None]) -> None:
        self.notify = notify
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._error: OSError | None = None
        self._api: _DiskArbitration | None = None
        self._run_loop = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="media-diskarbitration", daemon=True)
        self._thread.start()
        if not self._ready.wait(LISTENER_START_TIMEOUT_S):
            raise OSError("the DiskArbitration session did not start")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        self._stopping.set()
        if self._api is not None and self._run_loop:
            self._api.cf.CFRunLoopStop(self._run_loop)  # documented as callable from any thread
        if self._thread is not None:
            self._thread.join(RUN_LOOP_SLICE_S + 3)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def on_disk(self, disk: int, _context: int) -> None:
        """DADiskAppearedCallback / DADiskDisappearedCallback: read the description, hand the name on, return."""
        try:
            hints = hints_from_description(*self._api.describe(disk))
            if hints is not None:
                self.notify(hints)
        except Exception:  # an exception cannot cross back into the framework; later disks must still be seen
            log.exception("DiskArbitration callback: could not read a disk description")

    def _run(self) -> None:
        try:
            self._api = _DiskArbitration(self.on_disk)
            self._run_loop = self._api.cf.CFRunLoopGetCurrent()
            session = self._api.open_session(self._run_loop)
        except Exception as exc:  # no such API on this system (or it refused): the watcher polls instead
            self._error = exc if isinstance(exc, OSError) else OSError(f"{type(exc).__name__}: {exc}")
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stopping.is_set():
                self._api.cf.CFRunLoopRunInMode(self._api.default_mode, RUN_LOOP_SLICE_S, False)
        finally:
            self._api.close_session(session, self._run_loop)


class _DiskArbitration:
    """The framework calls, declared with their exact types (pointers squeezed into an int would crash)."""

    def __init__(self, on_disk: Callable[[int, int], None]) -> None:
        import ctypes

        try:
            self.cf = cf = ctypes.CDLL(CORE_FOUNDATION)
            self.da = da = ctypes.CDLL(DISK_ARBITRATION)
        except OSError as exc:
            raise OSError(f"cannot load the DiskArbitration framework: {exc}") from exc
        self.ctypes = ctypes
        p = ctypes.c_void_p
        self.DiskCallback = ctypes.CFUNCTYPE(None, p, p)
        cf.CFRunLoopGetCurrent.restype = p
        cf.CFRunLoopStop.argtypes = [p]
        cf.CFRunLoopRunInMode.argtypes = [p, ctypes.c_double, ctypes.c_ubyte]
        cf.CFRunLoopRunInMode.restype = ctypes.c_int32
        cf.CFRelease.argtypes = [p]
        cf.CFDictionaryGetValue.argtypes = [p, p]
        cf.CFDictionaryGetValue.restype = p
        cf.CFStringGetCString.argtypes = [p, ctypes.c_char_p, ctypes.c_long, ctypes.c_uint32]
        cf.CFStringGetCString.restype = ctypes.c_ubyte
        cf.CFBooleanGetValue.argtypes = [p]
        cf.CFBooleanGetValue.restype = ctypes.c_ubyte
        da.DASessionCreate.argtypes = [p]
        da.DASessionCreate.restype = p
        for register in (da.DARegisterDiskAppearedCallback, da.DARegisterDiskDisappearedCallback):
            register.argtypes = [p, p, self.DiskCallback, p]
        da.DAUnregisterCallback.argtypes = [p, self.DiskCallback, p]
        da.DASessionScheduleWithRunLoop.argtypes = [p, p, p]
        da.DASessionUnscheduleFromRunLoop.argtypes = [p, p, p]
        da.DADiskCopyDescription.argtypes = [p]
        da.DADiskCopyDescription.restype = p
        self.default_mode = p.in_dll(cf, "kCFRunLoopDefaultMode")
        self.bsd_name_key = p.in_dll(da, "kDADiskDescriptionMediaBSDNameKey")
        self.internal_key = p.in_dll(da, "kDADiskDescriptionDeviceInternalKey")
        # Kept on self: if the callback object were collected, the framework would call freed memory.
        self.callback = self.DiskCallback(on_disk)

    def open_session(self, run_loop: int) -> int:
        session = self.da.DASessionCreate(None)
        if not session:
            raise OSError("DASessionCreate returned no session")
        self.da.DARegisterDiskAppearedCallback(session, None, self.callback, None)
        self.da.DARegisterDiskDisappearedCallback(session, None, self.callback, None)
        self.da.DASessionScheduleWithRunLoop(session, run_loop, self.default_mode)
        return session

    def close_session(self, session: int, run_loop: int) -> None:
        self.da.DASessionUnscheduleFromRunLoop(session, run_loop, self.default_mode)
        self.da.DAUnregisterCallback(session, self.callback, None)
        self.cf.CFRelease(session)

    def describe(self, disk: int) -> tuple[str | None, bool | None]:
        """(BSD name, device is internal) from DADiskCopyDescription."""
        description = self.da.DADiskCopyDescription(disk)
        if not description:
            return None, None
        try:
            name_ref = self.cf.CFDictionaryGetValue(description, self.bsd_name_key)
            internal_ref = self.cf.CFDictionaryGetValue(description, self.internal_key)
            name = None
            if name_ref:
                buffer = self.ctypes.create_string_buffer(256)
                if self.cf.CFStringGetCString(name_ref, buffer, len(buffer), K_CF_STRING_ENCODING_UTF8):
                    name = buffer.value.decode()
            internal = bool(self.cf.CFBooleanGetValue(internal_ref)) if internal_ref else None
            return name, internal
        finally:
            self.cf.CFRelease(description)


class MacWatcher(EventPollingWatcher):
    poll_backend = "diskutil-poll"
    event_backend = "diskarbitration"
    event_source_class: type = DiskArbitrationListener

    def _event_source(self, notify: Callable[[list[str]], None]) -> DiskArbitrationListener:
        return self.event_source_class(notify)

    def _mounted(self) -> dict[str, Hashable]:
        return external_volumes(diskutil_plist("list", "-plist", "external"))

    def _volumes(self, disk: str) -> list[Volume]:
        identity = self._snapshot.get(disk)
        return [Volume(f"/dev/{disk}", (disk, identity))] if identity is not None else []
