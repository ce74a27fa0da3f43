"""Pure pieces of capture: key translation, title decoding, session type, window-change reporting, the watchdog."""

from __future__ import annotations

import pytest

from agent.capture.keyboard import HookWatchdog, KeyTranslator
from agent.capture.session_type import SessionType, detect_session_type
from agent.capture.window import ActiveWindow, WindowWatcher
from agent.capture.window_windows import EVENT_OBJECT_NAMECHANGE, EVENT_SYSTEM_FOREGROUND, should_report
from agent.capture.window_x11 import decode_compound_text, decode_title


def press_sequence(steps) -> list[str]:
    t = KeyTranslator()
    out = []
    for name, char, pressed in steps:
        key = t.translate(name, char, pressed)
        if key is not None:
            out.append(key)
    return out


def test_characters_named_keys_and_shortcuts():
    steps = [(None, "H", True), (None, "H", False), (None, "i", True), ("space", None, True),
             ("backspace", None, True), ("enter", None, True), ("ctrl_l", None, True), (None, "\x01", True),
             (None, "v", True), ("backspace", None, True), (None, "c", True), ("left", None, True),
             ("ctrl_l", None, False), ("esc", None, True), ("f5", None, True), ("shift", None, True),
             (None, "?", True), ("shift", None, False), ("page_down", None, True)]
    assert press_sequence(steps) == ["H", "i", " ", "backspace", "enter", "ctrl+a", "ctrl+v", "ctrl+backspace",
                                     "left", "escape", "?", "down"]


def test_altgr_as_ctrl_alt_still_types_characters_but_alt_shortcuts_do_not():
    assert press_sequence([("ctrl_r", None, True), ("alt_l", None, True), (None, "€", True)]) == ["€"]
    assert press_sequence([("alt_l", None, True), (None, "f", True), ("alt_l", None, False),
                           (None, "f", True)]) == ["f"]
    assert press_sequence([("cmd", None, True), (None, "x", True)]) == ["ctrl+x"]


def test_compound_text_as_xterm_writes_it():
    raw = b"Caf\xe9 \x1b%G\xe2\x80\x93\x1b%@ \xdcn\xefcode \x1b%G\xe2\x9c\x93\x1b%@ Notes"
    assert decode_compound_text(raw) == "Café – Ünïcode ✓ Notes"
    assert decode_compound_text(b"\x1b-B\xa3\x1b-A\xa3") == "Ł£"
    assert decode_title(b"Caf\xc3\xa9", "UTF8_STRING") == "Café"
    assert decode_title(b"Caf\xe9", "STRING") == "Café"          # ICCCM Latin-1
    assert decode_title(b"Caf\xc3\xa9", "STRING") == "Café"      # xdotool writes UTF-8 into STRING


@pytest.mark.parametrize("env, platform, expected", [
    ({"DISPLAY": ":0"}, "linux", SessionType.X11),
    ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, "linux", SessionType.WAYLAND),
    ({"XDG_SESSION_TYPE": "wayland", "DISPLAY": ":1"}, "linux", SessionType.WAYLAND),
    ({}, "linux", SessionType.NONE),
    ({}, "win32", SessionType.WINDOWS),
    ({}, "darwin", SessionType.MACOS),
])
def test_session_type(env, platform, expected):
    assert detect_session_type(env, platform) is expected


def test_watcher_reports_focus_and_title_changes_once_each():
    seen = []
    watcher = WindowWatcher(seen.append)
    a = ActiveWindow("Notes", "xterm", 10, 1)
    for window in (a, a, ActiveWindow("Notes", "xterm", 10, 1), ActiveWindow("Other", "xterm", 10, 1),
                   ActiveWindow("Other", "firefox", 11, 2), None):
        watcher._report(window)
    assert [(w.title, w.window_id) for w in seen] == [("Notes", 1), ("Other", 1), ("Other", 2)]
    assert watcher.current.window_id == 2


def test_windows_hook_reports_title_changes_only_of_the_foreground_window():
    assert should_report(EVENT_SYSTEM_FOREGROUND, 5, 0, 0, foreground=9)
    assert should_report(EVENT_OBJECT_NAMECHANGE, 9, 0, 0, foreground=9)
    assert not should_report(EVENT_OBJECT_NAMECHANGE, 5, 0, 0, foreground=9)     # a background window
    assert not should_report(EVENT_OBJECT_NAMECHANGE, 9, -4, 3, foreground=9)   # a control inside it


def test_hook_watchdog_needs_two_quiet_checks():
    dog = HookWatchdog(grace_s=3)
    assert not dog.hook_is_dead(last_os_input=110, last_hook_event=100)
    assert not dog.hook_is_dead(last_os_input=111, last_hook_event=111)  # events flowing again: reset
    assert not dog.hook_is_dead(last_os_input=120, last_hook_event=111)
    assert dog.hook_is_dead(last_os_input=125, last_hook_event=111)
