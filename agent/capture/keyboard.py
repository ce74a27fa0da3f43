"""Keystroke capture with pynput, built so that the OS never has a reason to drop our hook.

The listener's callback does nothing but put `(time, key, pressed, injected)` on a queue inside try/except: Windows
silently removes a low-level hook whose callback is slow, and a pynput listener whose callback raises stops. A
worker thread turns raw keys into the engine's key names and hands them on; a supervisor restarts a listener that
died (and, on Windows, one that went quiet while the OS still saw input).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("wardwatch.capture.keyboard")

SUPERVISE_EVERY_S = 2.0
RAW_QUEUE_LIMIT = 10_000  # ~15 minutes of fast typing; a stalled worker must not grow memory without bound

CTRL = frozenset({"ctrl", "ctrl_l", "ctrl_r"})
ALT = frozenset({"alt", "alt_l", "alt_r"})
CMD = frozenset({"cmd", "cmd_l", "cmd_r"})
MODIFIERS = CTRL | ALT | CMD | {"shift", "shift_l", "shift_r", "alt_gr", "caps_lock", "num_lock"}

# pynput Key names -> engine key names. Page up/down move the caret somewhere we cannot follow, like arrows.
NAMED_KEYS = {
    "space": " ", "enter": "enter", "backspace": "backspace", "tab": "tab", "esc": "escape", "delete": "delete",
    "left": "left", "right": "right", "up": "up", "down": "down", "home": "home", "end": "end",
    "page_up": "up", "page_down": "down",
}
# Shortcuts that change the text in ways the engine models (select all, cut, paste, delete word).
SHORTCUT_LETTERS = {"a": "ctrl+a", "x": "ctrl+x", "v": "ctrl+v"}


@dataclass(frozen=True)
class KeyEvent:
    time: float
    key: str        # an engine key name: a 1-char string or "backspace", "enter", "ctrl+a", "click", ...
    injected: bool  # synthesised (on-screen keyboard, xdotool); kept, and flagged


class KeyTranslator:
    """Turns (pynput key name or character, pressed) into engine key names, tracking held modifiers."""

    def __init__(self) -> None:
        self.held: set[str] = set()

    def translate(self, name: str | None, char: str | None, pressed: bool) -> str | None:
        if name in MODIFIERS:
            (self.held.add if pressed else self.held.discard)(name)
            return None
        if not pressed:
            return None
        ctrl = bool(self.held & CTRL)
        alt = bool(self.held & ALT)
        command = bool(self.held & CMD)
        if ctrl and alt and char and char.isprintable():
            return char  # Windows reports AltGr as Ctrl+Alt: the result is a character, not a shortcut
        if ctrl or command or alt:
            return self._shortcut(name, char)
        if name is not None:
            return NAMED_KEYS.get(name)
        if char is None or len(char) != 1:
            return None
        if char in "\r\n":
            return "enter"
        if char == "\t":
            return "tab"
        if char == "\b":
            return "backspace"
        return char if char.isprintable() else None

    def _shortcut(self, name: str | None, char: str | None) -> str | None:
        if name == "backspace":
            return "ctrl+backspace"  # Ctrl (Alt on macOS) + Backspace deletes a word; Cmd deletes more, same effect
        if name in ("left", "right", "up", "down", "home", "end", "delete"):
            return NAMED_KEYS[name]  # word jumps still move the caret
        if char is None or len(char) != 1:
            return None
        if ord(char) < 32:  # some backends report Ctrl+A as U+0001
            char = chr(ord(char) + 96)
        return SHORTCUT_LETTERS.get(char.lower())


def describe_pynput_key(key) -> tuple[str | None, str | None]:
    """(Key name, None) for special keys, (None, character) for character keys, (None, None) when unknown."""
    if key is None:
        return None, None
    if hasattr(key, "value") and isinstance(getattr(key, "name", None), str):  # a pynput Key enum member
        return key.name, None
    return None, getattr(key, "char", None)


class HookWatchdog:
    """Pure logic of the Windows watchdog: the OS saw input (GetLastInputInfo) well after the last event our hook
    delivered, twice in a row, so the hook was silently removed and must be reinstalled."""

    def __init__(self, grace_s: float = 3.0):
        self.grace_s = grace_s
        self.suspicious = 0

    def hook_is_dead(self, last_os_input: float, last_hook_event: float) -> bool:
        if last_os_input - last_hook_event > self.grace_s:
            self.suspicious += 1
        else:
            self.suspicious = 0
        return self.suspicious >= 2


class KeyboardCapture:
    """Mouse clicks arrive as the key "click", because a click moves the caret and the engine must start a new
    stretch of text.

    Two ways to receive keys: give `on_key`, and a worker thread of ours translates raw keys and calls it; or give
    `events`, a queue the caller's own worker drains, and raw keys arrive there as `("raw", item)` for that worker to
    pass to `translate`. The second saves a thread hop (two wake-ups) per key, which is most of the helper's CPU
    while typing."""

    def __init__(self, on_key: Callable[[KeyEvent], None] | None = None, capture_clicks: bool = True,
                 events: queue.Queue | None = None):
        if (on_key is None) == (events is None):
            raise ValueError("give either on_key or events")
        self.on_key = on_key
        self.capture_clicks = capture_clicks
        self.raw: queue.Queue = events if events is not None else queue.Queue(maxsize=RAW_QUEUE_LIMIT)
        self.keys_lost = 0  # queue full, or an error in the callback: counted, never raised into the listener
        self.restarts = 0
        self.last_event_at = time.monotonic()
        self._stop = threading.Event()
        self._listeners: list = []
        self._translator = KeyTranslator()
        self._worker = threading.Thread(target=self._work, name="wardwatch-keys", daemon=True)
        self._supervisor = threading.Thread(target=self._supervise, name="wardwatch-keys-supervisor", daemon=True)

    # ------------------------------------------------------------------ listener callbacks: queue only

    def _enqueue(self, key, pressed: bool, injected: bool, modifiers: frozenset[str] | None = None) -> None:
        # Stamped here, not by the worker: the watchdog asks whether the hook is alive, not whether we are busy.
        self.last_event_at = time.monotonic()
        try:
            self.raw.put_nowait(("raw", (time.time(), key, pressed, bool(injected), modifiers)))
        except Exception:  # queue.Full included: an exception here would stop the listener; losing a key is better
            self.keys_lost += 1

    def _on_press(self, key, injected=False) -> None:
        # A press-only listener (X11) runs this on its own thread and says which modifiers the press carried.
        self._enqueue(key, True, injected, getattr(threading.current_thread(), "held_modifiers", None))

    def _on_release(self, key, injected=False) -> None:
        self._enqueue(key, False, injected)

    def _on_click(self, _x, _y, _button, pressed, injected=False) -> None:
        if pressed:
            self._enqueue("click", True, injected)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start listening; raises OSError with the reason when the platform refuses (no RECORD extension, no
        Accessibility permission, ...)."""
        self._start_listeners()
        if self.on_key is not None:
            self._worker.start()
        self._supervisor.start()

    def stop(self) -> None:
        self._stop.set()
        self._stop_listeners()
        if self.on_key is not None:
            with contextlib.suppress(queue.Full):
                self.raw.put_nowait(None)
        for thread in (self._worker, self._supervisor):
            if thread.is_alive():
                thread.join(timeout=5)

    def _start_listeners(self) -> None:
        try:
            from pynput import keyboard, mouse
        except Exception as exc:  # pynput raises ImportError with the backend's reason (no display, ...)
            raise OSError(f"keyboard capture is not available: {exc}") from exc
        listeners = [press_only_listener_class(keyboard.Listener)(on_press=self._on_press, on_release=self._on_release)]
        if self.capture_clicks:
            listeners.append(click_listener_class(mouse.Listener)(on_click=self._on_click))
        for listener in listeners:
            listener.start()
        for listener in listeners:
            listener.wait()  # returns once the hook is in place (or the listener died trying)
        # macOS starts the listener without the Input Monitoring permission and then delivers nothing: say so.
        untrusted = any(getattr(listener, "IS_TRUSTED", True) is False for listener in listeners)
        dead = [listener for listener in listeners if not listener.is_alive()]
        if untrusted:
            for listener in listeners:
                listener.stop()
            raise OSError("keyboard capture needs the Input Monitoring permission for WardWatch "
                          "(System Settings > Privacy & Security)")
        if dead:
            for listener in listeners:
                listener.stop()
            raise OSError("keyboard capture could not start: the input listener stopped at once "
                          "(on X11 the RECORD extension is needed)")
        self._listeners = listeners

    def _stop_listeners(self) -> None:
        for listener in self._listeners:
            try:
                listener.stop()
            except Exception as exc:
                log.debug("listener stop: %s", type(exc).__name__)
        self._listeners = []

    def listening(self) -> bool:
        return bool(self._listeners) and all(listener.running and listener.is_alive() for listener in self._listeners)

    # ------------------------------------------------------------------ threads

    def translate(self, item: tuple) -> KeyEvent | None:
        """A raw `(time, key, pressed, injected[, modifiers])` from the listener as an engine key, or None (releases,
        modifiers, keys the engine has no use for). Call from one thread only: it tracks which modifiers are held.
        `modifiers`, when a press-only listener gives it, is the modifier state the press carried; it replaces the
        tracked state, since that listener sends no releases."""
        stamp, key, pressed, injected, *state = item
        if key == "click":
            name = "click"
        else:
            if state and state[0] is not None:
                self._translator.held = set(state[0])
            pynput_name, char = describe_pynput_key(key)
            name = self._translator.translate(pynput_name, char, pressed)
        return None if name is None else KeyEvent(stamp, name, injected)

    def _work(self) -> None:
        while True:
            item = self.raw.get()
            if item is None or self._stop.is_set():
                return
            event = self.translate(item[1])
            if event is None:
                continue
            try:
                self.on_key(event)
            except Exception:
                log.exception("key handler failed")  # the traceback holds no key: on_key gets only the event

    def _supervise(self) -> None:
        watchdog = HookWatchdog()
        last_input = _last_input_clock()
        delay = SUPERVISE_EVERY_S
        while not self._stop.wait(delay):
            delay = SUPERVISE_EVERY_S
            reason = None
            if not self.listening():
                reason = "the keyboard listener stopped"
            elif last_input is not None and watchdog.hook_is_dead(last_input(), self.last_event_at):
                reason = "the keyboard hook went quiet while the system still saw input"
            if reason is None:
                continue
            log.warning("%s; restarting it", reason)
            self._stop_listeners()
            try:
                self._start_listeners()
                self.restarts += 1
                watchdog.suspicious = 0
                self.last_event_at = time.monotonic()
            except OSError as exc:
                log.error("%s", exc)
                delay = min(60.0, SUPERVISE_EVERY_S * 8)


def click_listener_class(listener_class: type) -> type:
    """pynput's X11 mouse listener records the event range ButtonPress..LeaveNotify, so every pointer motion is
    parsed in Python (~100 events/s while the mouse moves). A click is all the engine needs: record button presses
    only. Other backends are returned unchanged."""
    if not listener_class.__module__.endswith("_xorg"):
        return listener_class
    from Xlib import X

    return type("ClickOnlyListener", (listener_class,),
                {"_EVENTS": (X.ButtonPress, X.ButtonPress), "__module__": listener_class.__module__})


# X modifier keysyms -> the translator's modifier names.
_X_MODIFIER_KEYSYMS = {"ctrl": ("Control_L", "Control_R"), "alt": ("Alt_L", "Alt_R", "Meta_L", "Meta_R"),
                       "cmd": ("Super_L", "Super_R", "Hyper_L", "Hyper_R")}


def press_only_listener_class(listener_class: type) -> type:
    """pynput's X11 keyboard listener records presses and releases and decodes each in Python (most of the helper's
    CPU while typing). Only presses and the modifiers held during them matter to the engine, and every X key press
    carries the modifier state, so record presses only and put that state on the listener thread as
    `held_modifiers` while the press is delivered. Other backends are returned unchanged."""
    if not listener_class.__module__.endswith("_xorg"):
        return listener_class
    from Xlib import X

    def _initialize(self, display) -> None:
        listener_class._initialize(self, display)
        self.modifier_masks = x_modifier_masks(display)
        self.held_modifiers = frozenset()

    def _handle_message(self, display, event, injected) -> None:
        state = event.state
        self.held_modifiers = frozenset(name for name, mask in self.modifier_masks.items() if state & mask)
        listener_class._handle_message(self, display, event, injected)

    return type("PressOnlyListener", (listener_class,),
                {"_EVENTS": (X.KeyPress, X.KeyPress), "_initialize": _initialize, "_handle_message": _handle_message,
                 "__module__": listener_class.__module__})


def x_modifier_masks(display) -> dict[str, int]:
    """The X state bits that mean Ctrl, Alt and Cmd (Super) under this display's modifier mapping."""
    from Xlib import XK

    wanted = {XK.string_to_keysym(sym): name for name, syms in _X_MODIFIER_KEYSYMS.items() for sym in syms}
    masks = dict.fromkeys(_X_MODIFIER_KEYSYMS, 0)
    for index, keycodes in enumerate(display.get_modifier_mapping()):
        for keycode in keycodes:
            name = wanted.get(display.keycode_to_keysym(keycode, 0)) if keycode else None
            if name is not None:
                masks[name] |= 1 << index
    return masks


def _last_input_clock() -> Callable[[], float] | None:
    """On Windows, a clock of the last input the OS saw (monotonic seconds); elsewhere None (no silent removal)."""
    if sys.platform != "win32":
        return None
    from agent.capture.keyboard_watchdog_windows import last_input_monotonic

    return last_input_monotonic
