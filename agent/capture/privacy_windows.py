"""Windows only: is the focused control a password field? ES_PASSWORD on classic Edit controls (cheap, every key),
then UI Automation's IsPassword for everything else (browsers, UWP), when comtypes is installed."""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("wardwatch.capture.privacy")

ES_PASSWORD = 0x0020
GWL_STYLE = -16


def is_password_edit(class_name: str, style: int) -> bool:
    """ES_PASSWORD means "password" only on Edit controls; on other classes the same bit means something else."""
    return "edit" in class_name.lower() and bool(style & ES_PASSWORD)


def focused_control() -> int:
    from ctypes import wintypes

    class GUITHREADINFO(ctypes.Structure):
        _fields_ = [("cbSize", wintypes.DWORD), ("flags", wintypes.DWORD), ("hwndActive", wintypes.HWND),
                    ("hwndFocus", wintypes.HWND), ("hwndCapture", wintypes.HWND), ("hwndMenuOwner", wintypes.HWND),
                    ("hwndMoveSize", wintypes.HWND), ("hwndCaret", wintypes.HWND), ("rcCaret", wintypes.RECT)]

    user32 = ctypes.windll.user32
    thread = user32.GetWindowThreadProcessId(user32.GetForegroundWindow(), None)
    info = GUITHREADINFO(cbSize=ctypes.sizeof(GUITHREADINFO))
    if not user32.GetGUIThreadInfo(thread, ctypes.byref(info)):
        return 0
    return info.hwndFocus or 0


def _edit_has_password_style(hwnd: int) -> bool:
    user32 = ctypes.windll.user32
    name = ctypes.create_unicode_buffer(64)
    user32.GetClassNameW(hwnd, name, 64)
    return is_password_edit(name.value, user32.GetWindowLongW(hwnd, GWL_STYLE))


def _uia_is_password() -> bool:
    try:
        import comtypes.client

        comtypes.client.GetModule("UIAutomationCore.dll")
        from comtypes.gen.UIAutomationClient import CUIAutomation, IUIAutomation
    except Exception:
        return False
    automation = comtypes.client.CreateObject(CUIAutomation, interface=IUIAutomation)
    element = automation.GetFocusedElement()
    return bool(element is not None and element.CurrentIsPassword)


def password_field_focused() -> bool:
    """True when the focused control takes a password. Errors count as "yes": better to miss a key than a secret."""
    try:
        hwnd = focused_control()
        return (bool(hwnd) and _edit_has_password_style(hwnd)) or _uia_is_password()
    except Exception as exc:
        log.debug("password-field check failed: %s", type(exc).__name__)
        return True
