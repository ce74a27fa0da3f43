"""The service watches the session helpers that said hello, and starts again one that died while its session lives.

The helper runs as the logged-in user (systemd user unit or XDG autostart, a Windows logon task, a launchd agent),
and those restart it too; this is the second line for a helper killed from a task manager. Who a helper is comes
from the kernel (SO_PEERCRED pid), and how to start it again from that process's own command line and display
variables, read while it was alive.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil

log = logging.getLogger("wardwatch.agent.supervise")
# What a helper needs from its desktop session to capture again; nothing else of the user's environment is kept.
SESSION_VARIABLES = ("DISPLAY", "XAUTHORITY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "XDG_SESSION_TYPE",
                     "DBUS_SESSION_BUS_ADDRESS", "HOME", "USER", "LOGNAME", "PATH", "LANG", "WARDWATCH_STATE")
MAX_RESTARTS = 5
RESTART_WINDOW_S = 600.0
# Longer than systemd's RestartSec and launchd's throttle: the user's own supervisor gets the first chance.
RESTART_GRACE_S = 10.0
# After a helper hangs up its channel, how long to keep looking closely: a process that is exiting can still look
# alive for a moment, and at logout the rest of its session is going at the same time.
HANG_UP_WATCH_S = 10.0
LOOK_AGAIN_S = 0.25
# A helper found dead is judged on a later look, this long after: its session leader, killed in the same logout,
# may still be exiting, and judging at once would report a logout as a helper stopped while its session was open.
DEATH_SETTLE_S = 1.0


@dataclass
class HelperRecord:
    pid: int
    uid: int
    username: str
    cmdline: list[str]
    env: dict[str, str]
    parent_pid: int
    created: float
    restarts: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class HelperStopped:
    """A helper that died while the session it belonged to is still there."""

    record: HelperRecord
    detail: str


def describe(pid: int, username: str) -> HelperRecord | None:
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            try:
                env = proc.environ()
            except psutil.AccessDenied:  # another user's environment needs CAP_SYS_PTRACE, which we do not keep
                env = {}
            return HelperRecord(pid=pid, uid=proc.uids().real, username=username, cmdline=proc.cmdline(),
                                env={k: env[k] for k in SESSION_VARIABLES if k in env}, parent_pid=proc.ppid(),
                                created=proc.create_time())
    except (psutil.Error, OSError):
        return None


def _alive(pid: int, created: float | None = None) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and (created is None or proc.create_time() == created)
    except psutil.Error:
        return False


def start_helper(record: HelperRecord) -> subprocess.Popen | None:
    """Start the helper again as its user, where this platform and our privileges allow it."""
    if sys.platform == "win32" or not record.cmdline:
        return None  # the logon task restarts it there
    as_other_user = record.uid != os.geteuid()
    if as_other_user and os.geteuid() != 0:
        return None
    try:
        return subprocess.Popen(record.cmdline, env=record.env, cwd="/", stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                user=record.uid if as_other_user else None)
    except OSError as exc:
        log.warning("could not start the session helper for %s again: %s", record.username, exc)
        return None


class HelperSupervisor:
    def __init__(self, restart: bool = True, grace_s: float = RESTART_GRACE_S):
        self.restart = restart
        self.grace_s = grace_s
        self.helpers: dict[int, HelperRecord] = {}
        self._due: list[tuple[float, HelperRecord]] = []
        self._children: list[subprocess.Popen] = []
        self._watch_until = 0.0  # look closely until then (a helper hung up)
        self._dead_since: dict[int, float] = {}  # helpers found dead, not yet judged

    def on_hello(self, pid: int, username: str) -> None:
        if pid in self.helpers:
            return  # a helper this service restarted, registered when it was started (keeps its history)
        record = describe(pid, username)
        if record is not None:
            self.helpers[pid] = record

    def hung_up(self) -> None:
        """A helper's channel closed: it may be exiting. Look closely for a while rather than at the next period."""
        self._watch_until = time.monotonic() + HANG_UP_WATCH_S

    def next_check_in(self, longest: float) -> float:
        """Seconds until `check` has something to do without being woken: a helper that hung up or was found dead
        is looked at again shortly, and a restart is due when its grace period ends."""
        now = time.monotonic()
        if self._dead_since or now < self._watch_until:
            return LOOK_AGAIN_S
        if not self._due:
            return longest
        return max(0.1, min(longest, min(due for due, _record in self._due) - now))

    def check(self) -> list[HelperStopped]:
        """Report helpers that died while their session lives, and start them again once the grace period shows
        that nothing else (systemd --user, launchd, the logon task) did. Returns the stops to report."""
        self._children = [c for c in self._children if c.poll() is None]  # reap
        now = time.monotonic()
        stopped = []
        for pid, record in list(self.helpers.items()):
            if _alive(pid, record.created):
                continue
            if now - self._dead_since.setdefault(pid, now) < DEATH_SETTLE_S:
                continue
            del self.helpers[pid]
            del self._dead_since[pid]
            if not _alive(record.parent_pid):
                log.info("session helper of %s ended with its session", record.username)
                continue
            who = record.username or f"uid {record.uid}"
            stopped.append(HelperStopped(record=record, detail=f"session helper (pid {pid}) of {who} stopped while "
                                                              "the session was open"))
            self._due.append((now + self.grace_s, record))
        for entry in [e for e in self._due if e[0] <= now]:
            self._due.remove(entry)
            self._restart(entry[1], now)
        return stopped

    def _restart(self, record: HelperRecord, now: float) -> None:
        if any(h.uid == record.uid for h in self.helpers.values()):
            # The user's own supervisor brought one back: a second helper would double every alert.
            log.info("session helper of %s is back already; not starting another", record.username)
            return
        record.restarts = [t for t in record.restarts if now - t < RESTART_WINDOW_S]
        if not self.restart or len(record.restarts) >= MAX_RESTARTS or not _alive(record.parent_pid):
            return
        child = start_helper(record)
        if child is None:
            return
        log.info("started the session helper of %s again (pid %d)", record.username, child.pid)
        self._children.append(child)
        # Kept under the new pid until it says hello, so its restart history is not lost.
        self.helpers[child.pid] = HelperRecord(pid=child.pid, uid=record.uid, username=record.username,
                                               cmdline=record.cmdline, env=record.env, parent_pid=record.parent_pid,
                                               created=_created(child.pid), restarts=[*record.restarts, now])


def _created(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0
