"""`wardwatch-agent`: one entry point, one module per command (imported only when that command runs)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from agent import __version__
from agent.errors import AgentError

PROG = "wardwatch-agent"


def default_state_dir() -> Path:
    env = os.environ.get("WARDWATCH_STATE")
    if env:
        return Path(env)
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "WardWatch" / "agent"
    if sys.platform == "darwin":
        return Path("/Library/Application Support/WardWatch/agent")
    if os.geteuid() == 0:
        return Path("/var/lib/wardwatch/agent")
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "wardwatch" / "agent"


def _handler(target: str) -> Callable[[argparse.Namespace], int]:
    """Resolve 'module:function' lazily, so `scan` never imports gRPC and `run` never imports the engine twice."""

    def run(args: argparse.Namespace) -> int:
        module_name, func_name = target.split(":")
        return getattr(importlib.import_module(module_name), func_name)(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="WardWatch safeguarding agent.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--state", type=Path, default=None, help="agent state directory (default: $WARDWATCH_STATE)")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug detail (never alert content)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("enroll", help="enrol this device with a collector")
    s.add_argument("enrolment", metavar="ENROLMENT-STRING")
    s.add_argument("--age-band", choices=["primary", "secondary", "staff"], default=None,
                   help="override the site's age band for this device")
    s.set_defaults(func=_handler("agent.enrol:cmd_enroll"))

    s = sub.add_parser("run", help="run the agent service (spool, uplink, USB, bundles)")
    s.set_defaults(func=_handler("agent.service:cmd_run"))

    s = sub.add_parser("session", help="run the per-user session helper (keyboard, window titles, detection)")
    s.set_defaults(func=_handler("agent.session:cmd_session"))

    s = sub.add_parser("status", help="show identity, collector, spool depth and last contact")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_handler("agent.status:cmd_status"))

    s = sub.add_parser("send-test-alert", help="queue a signed test alert, deliver it and wait for the ack")
    s.add_argument("--category", default="profanity")
    s.add_argument("--severity", type=int, default=1, choices=range(1, 6), metavar="1-5")
    s.add_argument("--text", default="WardWatch test alert")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the ack (default 10)")
    s.set_defaults(func=_handler("agent.status:cmd_send_test_alert"))

    s = sub.add_parser("scan", help="run the detection engine over text, one JSON object per input line")
    s.add_argument("--profile", choices=["primary", "secondary", "staff"], default="secondary")
    s.add_argument("--source", choices=["typed", "title"], default="typed")
    s.add_argument("--keys", action="store_true", help="each line is a keystroke stream; U+0008 is Backspace")
    lib = s.add_mutually_exclusive_group()
    lib.add_argument("--bundle", type=Path, help="a signed bundle file built by signatures/build")
    lib.add_argument("--signatures", type=Path, help="a directory of keyword library TOML files")
    s.add_argument("input", nargs="?", default="-", metavar="FILE|-")
    s.set_defaults(func=_handler("agent.detect.cli:cmd_scan"))

    s = sub.add_parser("check-media", help="classify block devices or image files: encrypted or not")
    s.add_argument("paths", nargs="+", metavar="PATH")
    s.set_defaults(func=_handler("agent.capture.media.cli:cmd_check_media"))

    s = sub.add_parser("generalize", help="wipe identity and spool before capturing a golden image")
    s.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    s.set_defaults(func=_handler("agent.enrol:cmd_generalize"))

    s = sub.add_parser("uninstall", help="tell the collector this device is removed (needs the code), wipe state")
    s.add_argument("--code", default=None, help="the uninstall code set on the collector")
    s.set_defaults(func=_handler("agent.enrol:cmd_uninstall"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.state is None:
        args.state = default_state_dir()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except AgentError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
