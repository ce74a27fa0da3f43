"""`wardwatch-agent check-media PATH...`: one JSON object per path on stdout."""

from __future__ import annotations

import argparse
import json
import sys

from agent.capture.media.classify import classify_path
from agent.capture.media.report import NO_ACCESS
from agent.errors import AgentError


def cmd_check_media(args: argparse.Namespace) -> int:
    """Classify every path; every path gets its line, and an unreadable one makes the exit status 2."""
    unreadable: list[str] = []
    for path in args.paths:
        report = classify_path(path)
        print(json.dumps(report.to_dict(), sort_keys=True), flush=True)
        if report.state == NO_ACCESS:
            unreadable.append(f"{path} ({report.why or 'unreadable'})")
    if unreadable:
        sys.stdout.flush()
        noun = "path" if len(unreadable) == 1 else "paths"
        raise AgentError(f"cannot read {len(unreadable)} {noun}: {'; '.join(unreadable)}")
    return 0
