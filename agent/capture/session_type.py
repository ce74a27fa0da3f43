"""Which kind of desktop session the helper runs in; it decides which capture backends can work at all."""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Mapping


class SessionType(enum.StrEnum):
    X11 = "x11"
    WAYLAND = "wayland"
    WINDOWS = "windows"
    MACOS = "macos"
    NONE = "none"  # a console or an ssh login: there is no desktop to watch


def detect_session_type(environ: Mapping[str, str] | None = None, platform: str | None = None) -> SessionType:
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if platform == "win32":
        return SessionType.WINDOWS
    if platform == "darwin":
        return SessionType.MACOS
    declared = env.get("XDG_SESSION_TYPE", "").lower()
    # XWayland sets DISPLAY inside a Wayland session, but it only sees X clients: it cannot see the keyboard of
    # native Wayland windows, so a Wayland session is Wayland even when DISPLAY is set.
    if declared == "wayland" or env.get("WAYLAND_DISPLAY"):
        return SessionType.WAYLAND
    if env.get("DISPLAY"):
        return SessionType.X11
    return SessionType.NONE


def keystrokes_supported(session: SessionType) -> bool:
    return session in (SessionType.X11, SessionType.WINDOWS, SessionType.MACOS)


WAYLAND_NOTICE = (
    "This is a Wayland session: Wayland lets no program read other programs' keystrokes or window titles, so "
    "WardWatch cannot capture typed text or window titles here. This gap is reported to the school's collector. "
    "Log in with an X11 session (\"GNOME on Xorg\" or similar) for full coverage."
)
