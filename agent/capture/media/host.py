"""The small platform interface: `probe(path, st)` for OS facts and `watcher_class()` for arrivals.

Each platform has its own probe_*/watch_* module, imported only on that platform (the Windows one shells out to
PowerShell, the macOS one to diskutil; neither would work anywhere else).
"""

from __future__ import annotations

import os
import sys

from agent.capture.media.verdict import OsFacts


def probe(path: str, st: os.stat_result | None) -> OsFacts:
    """What this machine's OS knows about `path` (filesystem type, device details, unlocked mappings)."""
    if sys.platform.startswith("linux"):
        from agent.capture.media import probe_linux

        return probe_linux.probe(path, st)
    if sys.platform == "win32":
        from agent.capture.media import probe_windows

        return probe_windows.probe(path, st)
    if sys.platform == "darwin":
        from agent.capture.media import probe_macos

        return probe_macos.probe(path, st)
    return OsFacts(evidence=[f"no OS probe for {sys.platform}"])


def watcher_class() -> type:
    """The arrival watcher for this platform; all share the constructor (on_report, include_loop, ...)."""
    if sys.platform.startswith("linux"):
        from agent.capture.media.watch_linux import LinuxWatcher

        return LinuxWatcher
    if sys.platform == "win32":
        from agent.capture.media.watch_windows import WindowsWatcher

        return WindowsWatcher
    if sys.platform == "darwin":
        from agent.capture.media.watch_macos import MacWatcher

        return MacWatcher
    from agent.capture.media.watch_poll import PollingWatcher

    return PollingWatcher


def os_write_policy() -> str:
    """Whether the OS itself blocks writes to unencrypted removable drives (Windows RDVDenyWriteAccess)."""
    if sys.platform == "win32":
        from agent.capture.media import probe_windows

        return probe_windows.os_write_policy()
    return f"not-applicable: no such policy on {sys.platform}"
