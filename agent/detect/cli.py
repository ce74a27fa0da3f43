"""`wardwatch-agent scan`: run the engine over text, one JSON object per input line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from agent.detect.engine import Engine
from agent.detect.match import Match
from agent.errors import AgentError
from signatures.schema import LibraryError

BACKSPACE = "\b"


def _load_engine(args: argparse.Namespace) -> Engine:
    try:
        if args.bundle is not None:
            key_path = args.bundle.with_name(args.bundle.name + ".pub")
            try:
                public_key = key_path.read_bytes()
            except OSError:
                raise AgentError(f"no bundle public key at {key_path} (signatures/build writes it next to the "
                                 "bundle)") from None
            return Engine.from_bundle(args.bundle, public_key, profile=args.profile)
        return Engine.from_signatures(args.signatures, profile=args.profile)
    except LibraryError as exc:
        raise AgentError(f"bad keyword library: {exc}") from None


def _lines(stream: TextIO) -> Iterator[str]:
    for line in stream:
        yield line.rstrip("\n").rstrip("\r")


def _scan_keys(engine: Engine, line: str) -> list[Match]:
    kb = engine.keystroke_buffer()
    found: list[Match] = []
    for ch in line:
        if ch == BACKSPACE:
            found += kb.feed("backspace")
        elif ch == "\t":
            found += kb.feed("tab")
        elif ch.isprintable() or ch == " ":
            found += kb.feed(ch)
    return found + kb.new_segment("end of line")


def _run(engine: Engine, args: argparse.Namespace, stream: TextIO) -> None:
    out = sys.stdout
    for number, line in enumerate(_lines(stream), start=1):
        matches = _scan_keys(engine, line) if args.keys else engine.scan(line, source=args.source)
        out.write(json.dumps({"line": number, "matches": [m.to_dict() for m in matches]}, ensure_ascii=False))
        out.write("\n")


def cmd_scan(args: argparse.Namespace) -> int:
    engine = _load_engine(args)
    try:
        if args.input in ("-", None):
            stdin = open(sys.stdin.fileno(), encoding="utf-8", errors="strict", closefd=False)  # noqa: SIM115
            _run(engine, args, stdin)
        else:
            with Path(args.input).open(encoding="utf-8", errors="strict") as stream:
                _run(engine, args, stream)
    except OSError as exc:
        raise AgentError(f"cannot read {args.input}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise AgentError(f"{args.input} is not UTF-8 text") from None
    return 0
