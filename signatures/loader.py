"""Load a directory of keyword library TOML files into one validated Library, or refuse the whole set.

Every problem is reported as `path:line: what is wrong`. Nothing is returned until every file has parsed and
validated, so a caller never holds half a library.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path

from signatures.schema import ALLOW_CATEGORY, Library, LibraryError, assemble, parse_document

_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column \d+|end of document)\)\s*$")


def default_signatures_dir() -> Path:
    """The libraries shipped inside the `signatures` package."""
    return Path(__file__).resolve().parent


def library_files(libs_dir: Path) -> list[Path]:
    return sorted(p for p in libs_dir.glob("*.toml") if p.is_file())


def _line_locator(text: str) -> Callable[[str | None], int]:
    """Find the line that defines a rule id in the raw text; errors that belong to no rule point at line 1."""
    lines = text.splitlines()

    def locate(rule_id: str | None) -> int:
        if rule_id:
            wanted = re.compile(r'^\s*id\s*=\s*["\']' + re.escape(rule_id) + r'["\']')
            for number, line in enumerate(lines, start=1):
                if wanted.match(line):
                    return number
        return 1

    return locate


def _parse_file(path: Path, shown: str):
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        raise LibraryError(f"{shown}:1: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise LibraryError(f"{shown}:1: not UTF-8 text") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        # "at end of document" means an unclosed list or string that runs to the last line
        last_line = str(max(1, len(text.splitlines())))
        line = position.group(1) if position and position.group(1) else last_line
        raise LibraryError(f"{shown}:{line}: {_TOML_POSITION.sub('', message)}") from None
    locate = _line_locator(text)
    stem = path.stem
    expected = None if stem == ALLOW_CATEGORY else stem
    return raw, locate, parse_document(doc, shown, locate, expected_category=expected)


def load_library(libs_dir: Path) -> Library:
    """Parse and validate every `*.toml` in libs_dir; the version is a hash of their bytes."""
    import hashlib  # here, not at the top: hashlib loads OpenSSL (~3 MB), and a helper running a bundle never hashes

    if not libs_dir.is_dir():
        raise LibraryError(f"{libs_dir}:1: not a directory of keyword libraries")
    files = library_files(libs_dir)
    if not files:
        raise LibraryError(f"{libs_dir}:1: no keyword library (*.toml) files")
    digest = hashlib.sha256()
    parsed = []
    for path in files:
        raw, locate, result = _parse_file(path, str(path))
        digest.update(path.name.encode() + b"\0" + raw + b"\0")
        parsed.append((str(path), locate, result))
    return assemble(parsed, version=f"dir-{digest.hexdigest()[:12]}")
