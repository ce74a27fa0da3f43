"""macOS only: is a password being typed? Secure event input (which macOS turns on for every password field and
terminal "secure keyboard entry") and the focused element's AXSecureTextField subrole."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("wardwatch.capture.privacy")


def is_secure_text_role(role: str | None, subrole: str | None) -> bool:
    return subrole == "AXSecureTextField" or role == "AXSecureTextField"


def secure_event_input_enabled() -> bool:
    carbon = ctypes.cdll.LoadLibrary(ctypes.util.find_library("Carbon"))
    carbon.IsSecureEventInputEnabled.restype = ctypes.c_bool
    return bool(carbon.IsSecureEventInputEnabled())


def _focused_element_is_secure() -> bool:
    from ApplicationServices import (
        AXUIElementCopyAttributeValue,
        AXUIElementCreateSystemWide,
        kAXFocusedUIElementAttribute,
        kAXRoleAttribute,
        kAXSubroleAttribute,
    )

    err, element = AXUIElementCopyAttributeValue(AXUIElementCreateSystemWide(), kAXFocusedUIElementAttribute, None)
    if err or element is None:
        return False
    _, role = AXUIElementCopyAttributeValue(element, kAXRoleAttribute, None)
    _, subrole = AXUIElementCopyAttributeValue(element, kAXSubroleAttribute, None)
    return is_secure_text_role(role, subrole)


def password_field_focused() -> bool:
    """True when a password is being typed. Errors count as "yes": better to miss a key than a secret."""
    try:
        return secure_event_input_enabled() or _focused_element_is_secure()
    except Exception as exc:
        log.debug("password-field check failed: %s", type(exc).__name__)
        return True
