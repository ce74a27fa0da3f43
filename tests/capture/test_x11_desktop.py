"""The X11 window watcher and the keyboard capture on a real X server, typed into by xdotool."""

from __future__ import annotations

import itertools
import os
import threading

import pytest

from agent.capture.keyboard import KeyboardCapture, KeyEvent
from agent.capture.window import ActiveWindow
from agent.capture.window_x11 import X11WindowWatcher
from tests.capture.conftest import Desktop
from tests.harness import start_xvfb, wait_for

pytestmark = pytest.mark.desktop


class Seen:
    def __init__(self):
        self.items: list = []
        self.lock = threading.Lock()

    def add(self, item) -> None:
        with self.lock:
            self.items.append(item)

    def snapshot(self) -> list:
        with self.lock:
            return list(self.items)


def test_window_watcher_follows_focus_and_title_changes(desktop):
    seen = Seen()
    watcher = X11WindowWatcher(seen.add)
    watcher.start()
    try:
        notes, notes_wid = desktop.xterm("Year 9 English - Notes")
        desktop.activate(notes_wid)
        first = wait_for(lambda: [w for w in seen.snapshot() if w.window_id == notes_wid], 10, "focus on the xterm")
        assert first[-1].title == "Year 9 English - Notes"
        assert first[-1].application == "xterm" and first[-1].pid == notes.pid

        desktop.set_title(notes_wid, "Pornhub - Free Porn Videos - Mozilla Firefox")
        wait_for(lambda: watcher.current and watcher.current.title.startswith("Pornhub"), 10, "the new title")

        other, other_wid = desktop.xterm("Café – Ünïcode ✓ Maths", env={"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})
        desktop.activate(other_wid)
        wait_for(lambda: watcher.current and watcher.current.window_id == other_wid, 10, "focus on the 2nd xterm")
        assert watcher.current.title == "Café – Ünïcode ✓ Maths"  # xterm wrote it as COMPOUND_TEXT

        desktop.activate(notes_wid)
        wait_for(lambda: watcher.current and watcher.current.window_id == notes_wid, 10, "focus back")
        reports = [(w.window_id, w.title) for w in seen.snapshot()]
        # One report per change: no duplicates of the same state in a row.
        assert all(a != b for a, b in itertools.pairwise(reports))
        assert (notes_wid, "Pornhub - Free Porn Videos - Mozilla Firefox") in reports
        desktop.close(other)
        desktop.close(notes)
    finally:
        watcher.stop()


def test_keyboard_capture_turns_typing_into_engine_keys(desktop):
    _proc, wid = desktop.xterm("Typing test")
    desktop.activate(wid)
    seen = Seen()
    capture = KeyboardCapture(seen.add)
    capture.start()
    try:
        assert capture.listening()
        desktop.type("Hello wor")
        desktop.key("BackSpace", "BackSpace")
        desktop.type("rld!")
        desktop.key("Return", "ctrl+a", "ctrl+BackSpace", "Left")
        desktop.run("xdotool", "mousemove", "--sync", "200", "200", "mousemove", "--sync", "300", "300", "click", "1")
        desktop.type("x")
        # Pointer motion is not recorded at all; the click is, because it moves the caret.
        expected = [*"Hello wor", "backspace", "backspace", *"rld!", "enter", "ctrl+a", "ctrl+backspace", "left",
                    "click", "x"]
        wait_for(lambda: len(seen.snapshot()) >= len(expected), 15, "the typed keys")
        events: list[KeyEvent] = seen.snapshot()
        assert [e.key for e in events] == expected
        assert all(isinstance(e.injected, bool) for e in events)
    finally:
        capture.stop()


def test_a_dead_listener_is_restarted_by_the_supervisor(desktop):
    _proc, wid = desktop.xterm("Supervisor test")
    desktop.activate(wid)
    seen = Seen()
    capture = KeyboardCapture(seen.add, capture_clicks=False)
    capture.start()
    try:
        capture._listeners[0].stop()  # as if the hook had been torn down under us
        wait_for(lambda: capture.restarts >= 1 and capture.listening(), 15, "the supervisor to restart it")
        desktop.type("ok")
        wait_for(lambda: [e.key for e in seen.snapshot()] == ["o", "k"], 10, "keys after the restart")
    finally:
        capture.stop()


def test_active_window_is_a_plain_value():
    window = ActiveWindow("t", "xterm", 1, 2)
    assert window == ActiveWindow("t", "xterm", 1, 2)


def test_without_a_window_manager_the_input_focus_is_followed_and_logout_is_noticed():
    """No EWMH window manager (so no _NET_ACTIVE_WINDOW): the watcher follows the input focus instead, walking up
    to the window that carries the title; when the X server goes away it says so once."""
    xvfb, display = start_xvfb()
    desk = Desktop(display, {**os.environ, "DISPLAY": display}, [])
    lost = threading.Event()
    seen = Seen()
    watcher = X11WindowWatcher(seen.add, display_name=display, on_lost=lost.set)
    try:
        wait_for(lambda: desk.run("xdotool", "getmouselocation", check=False), 30, "Xvfb")
        _proc, wid = desk.xterm("Bare display notes")
        # Without a window manager the xterm maps a moment after it exists; focus it once it is viewable.
        wait_for(lambda: desk.run("xdotool", "windowfocus", "--sync", str(wid), check=False) is not None
                 and desk.run("xdotool", "getwindowfocus", check=False).strip() == str(wid), 10, "focus")
        watcher.start()
        wait_for(lambda: watcher.current and watcher.current.title == "Bare display notes", 10, "the focused xterm")
        assert watcher.current.application == "xterm"
        desk.set_title(wid, "Renamed on a bare display")
        wait_for(lambda: watcher.current.title == "Renamed on a bare display", 10, "the new title")
        for proc in desk.procs:
            desk.close(proc)
        desk.close(xvfb)
        wait_for(lost.is_set, 10, "the watcher to notice the display is gone")
    finally:
        watcher.stop()
        for proc in [*desk.procs, xvfb]:
            if proc.poll() is None:
                desk.close(proc)
