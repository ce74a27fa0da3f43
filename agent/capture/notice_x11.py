"""The monitoring notice on X11: a small window in the top-right corner that never takes the keyboard focus.

It is override-redirect, so the window manager neither focuses nor decorates it: a pupil who is already typing keeps
typing into their own window. A click dismisses it; otherwise it goes after `seconds`."""

from __future__ import annotations

import logging
import select
import textwrap
import threading
import time

log = logging.getLogger("wardwatch.notice")

WIDTH_CHARS = 64
MARGIN = 12
LINE_HEIGHT = 16


def wrap_notice(text: str, width: int = WIDTH_CHARS) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        lines.extend(textwrap.wrap(paragraph, width) or [""])
    # Core X fonts draw Latin-1; anything else shows as '?', which beats not showing the notice at all.
    return [line.encode("latin-1", "replace").decode("latin-1") for line in lines]


def show_notice(text: str, seconds: float = 30.0, display_name: str | None = None) -> threading.Thread:
    """Show `text` from a background thread; returns the thread. Raises OSError if the display cannot be opened."""
    from Xlib import X, display, error

    try:
        d = display.Display(display_name)
    except (error.DisplayError, OSError) as exc:
        raise OSError(f"cannot open the X display for the notice: {exc}") from exc
    lines = wrap_notice(text)
    screen = d.screen()
    font = d.open_font("fixed")
    width = WIDTH_CHARS * 6 + 2 * MARGIN
    height = len(lines) * LINE_HEIGHT + 2 * MARGIN
    window = screen.root.create_window(
        max(0, screen.width_in_pixels - width - 20), 20, width, height, 2, screen.root_depth,
        X.InputOutput, X.CopyFromParent, background_pixel=screen.white_pixel, border_pixel=screen.black_pixel,
        override_redirect=True, event_mask=X.ExposureMask | X.ButtonPressMask)
    window.set_wm_name("WardWatch monitoring notice")
    gc = window.create_gc(foreground=screen.black_pixel, background=screen.white_pixel, font=font)
    window.map()
    d.flush()

    def run() -> None:
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                while d.pending_events():
                    event = d.next_event()
                    if event.type == X.Expose:
                        for i, line in enumerate(lines):
                            window.image_text(gc, MARGIN, MARGIN + (i + 1) * LINE_HEIGHT - 4, line)
                        d.flush()
                    elif event.type == X.ButtonPress:
                        return
                select.select([d.fileno()], [], [], max(0.0, deadline - time.monotonic()))
        except Exception as exc:  # the session ended under us
            log.debug("notice window: %s", type(exc).__name__)
        finally:
            try:
                window.destroy()
                d.close()
            except Exception as exc:
                log.debug("notice window close: %s", type(exc).__name__)

    thread = threading.Thread(target=run, name="wardwatch-notice", daemon=True)
    thread.start()
    return thread
