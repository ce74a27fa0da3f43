"""The detection engine: a compiled keyword library for one age band, swappable while in use."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from agent.detect.exemptions import Exemptions
from agent.detect.keystrokes import KeystrokeBuffer
from agent.detect.match import Match, make_match
from agent.detect.matcher import CompiledLibrary
from signatures.loader import default_signatures_dir, load_library
from signatures.schema import Library

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519

SOURCES = ("typed", "title", "deleted")


class Engine:
    """Scans text for library hits. Reads take one reference to the compiled library, so a swap never tears a scan."""

    def __init__(self, compiled: CompiledLibrary, exemptions: Exemptions | None = None):
        self._compiled = compiled
        self.exemptions = exemptions or Exemptions()
        self._swap_lock = threading.Lock()

    @classmethod
    def from_library(cls, library: Library, profile: str = "secondary", exemptions: Exemptions | None = None
                     ) -> Engine:
        return cls(CompiledLibrary(library, profile), exemptions)

    @classmethod
    def from_signatures(cls, path: Path | None = None, profile: str = "secondary") -> Engine:
        """Load the TOML libraries in `path` (default: the ones shipped in the `signatures` package)."""
        return cls.from_library(load_library(path or default_signatures_dir()), profile)

    @classmethod
    def from_bundle(cls, path: Path, public_key: ed25519.Ed25519PublicKey | bytes,
                    profile: str = "secondary") -> Engine:
        """Verify the bundle's signature with the bundle key first; raises BundleError if it does not verify."""
        # Imported here: the signature check brings in cryptography (~7 MB), which the built-in libraries never need.
        from signatures.bundle import load_signed_file

        return cls.from_library(load_signed_file(path, public_key), profile)

    @property
    def compiled(self) -> CompiledLibrary:
        return self._compiled

    @property
    def version(self) -> str:
        return self._compiled.version

    @property
    def profile(self) -> str:
        return self._compiled.profile

    def scan(self, text: str, source: str = "typed") -> list[Match]:
        """Every hit in a complete text (a title, a pasted message)."""
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
        compiled = self._compiled
        return self.without_exempt(make_match(compiled, h, text, source) for h in compiled.find(text, final=True))

    def without_exempt(self, matches) -> list[Match]:
        """Drop matches an exemption covers right now (keystroke-buffer matches go through this too)."""
        return self.exemptions.keep(matches)

    def keystroke_buffer(self) -> KeystrokeBuffer:
        """A composed-buffer keystroke model bound to this engine (and to whatever library it swaps in later)."""
        return KeystrokeBuffer(self)

    def swap_library(self, other: Engine | Library | CompiledLibrary) -> None:
        """Use another library from the next scan on; compiled for this engine's profile before the swap. An engine
        brings its exemptions along: they came in the same signed bundle."""
        exemptions = self.exemptions
        if isinstance(other, Engine):
            exemptions = other.exemptions
            other = other.compiled
        if isinstance(other, CompiledLibrary):
            if other.profile != self.profile:
                raise ValueError(f"library compiled for {other.profile!r}, this engine runs {self.profile!r}")
            compiled = other
        elif isinstance(other, Library):
            compiled = CompiledLibrary(other, self.profile)
        else:
            raise TypeError(f"cannot swap in a {type(other).__name__}")
        with self._swap_lock:
            self._compiled = compiled
            self.exemptions = exemptions
