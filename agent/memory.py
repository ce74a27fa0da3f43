"""Giving memory back to the operating system after a one-off build (the session helper compiling its library)."""

from __future__ import annotations

import sys


def return_free_heap() -> None:
    """Hand the C heap's free pages back to the OS (glibc's malloc_trim). Building the keyword automata frees far
    more than it keeps (~8 MB of the helper's resident memory was heap left free by the build); without this glibc
    keeps those pages for reuse the helper never makes. A no-op where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)  # the process's own symbols: glibc's, where malloc_trim lives
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        pass
