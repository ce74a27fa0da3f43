"""`wardwatch-collector`: one entry point, one module per command group (imported only when it runs)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from collector import __version__
from collector.errors import CollectorError

PROG = "wardwatch-collector"


def default_data_dir() -> Path:
    env = os.environ.get("WARDWATCH_DATA")
    if env:
        return Path(env)
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "WardWatch" / "collector"
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "wardwatch" / "collector"


def _handler(target: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        module_name, func_name = target.split(":")
        return getattr(importlib.import_module(module_name), func_name)(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="WardWatch collector.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--data", type=Path, default=None, help="data directory (default: $WARDWATCH_DATA)")
    p.add_argument("--db", default=None, help="database URL (default: SQLite in the data directory, or config)")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug detail (never alert content)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("init", help="create the CA, keys, configuration and database")
    s.add_argument("--san", action="append", default=[], help="extra DNS name or IP for the server certificate")
    s.add_argument("--site", default="Main site", help="name of the first site (default: 'Main site')")
    s.set_defaults(func=_handler("collector.setup:cmd_init"))

    s = sub.add_parser("serve", help="run the gRPC gateway and the web console")
    s.add_argument("--listen", default=None, help="mTLS gRPC address HOST:PORT (default 0.0.0.0:50051)")
    s.add_argument("--enrol-listen", default=None,
                   help="enrolment address HOST:PORT (default: the --listen host, port + 1)")
    s.add_argument("--web", default=None, help="web console address HOST:PORT (default 127.0.0.1:8080)")
    s.add_argument("--workers", type=int, default=1,
                   help="collector processes on this host sharing the ports (use PostgreSQL for more than 1)")
    s.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    s.add_argument("--standby", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--replacing", action="store_true", help=argparse.SUPPRESS)
    s.set_defaults(func=_handler("collector.serve:cmd_serve"))

    tok = sub.add_parser("token", help="enrolment tokens").add_subparsers(dest="token_cmd", required=True)
    s = tok.add_parser("create", help="print a one-line enrolment string")
    s.add_argument("--ttl", default="24h", help="lifetime, e.g. 30m, 24h, 7d (default 24h)")
    s.add_argument("--uses", type=int, default=1, help="how many devices may enrol with it (default 1)")
    s.add_argument("--site", default=None, help="site the devices join (default: the first site)")
    s.add_argument("--age-band", choices=["primary", "secondary", "staff"], default="secondary")
    s.add_argument("--address", default=None, help="collector HOST:PORT agents should dial (default: as served)")
    s.add_argument("--enrol-address", default=None, help="enrolment HOST:PORT (default: as served)")
    s.set_defaults(func=_handler("collector.tokens:cmd_token_create"))
    s = tok.add_parser("revoke", help="revoke a token by its id")
    s.add_argument("token_id")
    s.set_defaults(func=_handler("collector.tokens:cmd_token_revoke"))
    s = tok.add_parser("list", help="list tokens")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_handler("collector.tokens:cmd_token_list"))

    al = sub.add_parser("alerts", help="stored alerts").add_subparsers(dest="alerts_cmd", required=True)
    s = al.add_parser("list", help="list alerts")
    s.add_argument("--json", action="store_true", help="one JSON object per line")
    s.add_argument("--limit", type=int, default=None)
    s.set_defaults(func=_handler("collector.alerts_cli:cmd_alerts_list"))
    s = al.add_parser("verify", help="re-verify the signature of every stored alert")
    s.set_defaults(func=_handler("collector.alerts_cli:cmd_alerts_verify"))

    ag = sub.add_parser("agents", help="enrolled devices").add_subparsers(dest="agents_cmd", required=True)
    s = ag.add_parser("list", help="list devices")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_handler("collector.alerts_cli:cmd_agents_list"))
    s = ag.add_parser("revoke", help="revoke a device's certificate")
    s.add_argument("agent_id")
    s.set_defaults(func=_handler("collector.alerts_cli:cmd_agents_revoke"))
    s = ag.add_parser("decommission", help="mark a device that is gone as removed (it cannot uninstall itself)")
    s.add_argument("agent_id")
    s.set_defaults(func=_handler("collector.fleet_cli:cmd_agents_decommission"))

    uc = sub.add_parser("uninstall-code", help="the code technicians need to uninstall an agent").add_subparsers(
        dest="uninstall_code_cmd", required=True)
    s = uc.add_parser("set", help="set the uninstall code (a random one is made and printed if --code is omitted)")
    s.add_argument("--code", default=None, help="the code (at least 8 characters)")
    s.set_defaults(func=_handler("collector.fleet_cli:cmd_uninstall_code_set"))

    ca = sub.add_parser("ca", help="the collector's certificate authority").add_subparsers(dest="ca_cmd", required=True)
    s = ca.add_parser("rotate", help="start a CA rotation (old and new CA trusted together), or --finish it")
    s.add_argument("--finish", action="store_true", help="end the overlap: only the new CA remains")
    s.set_defaults(func=_handler("collector.fleet_cli:cmd_ca_rotate"))
    s = ca.add_parser("status", help="show the CA, the server certificate and a rotation's progress")
    s.set_defaults(func=_handler("collector.fleet_cli:cmd_ca_status"))

    sc = sub.add_parser("server-cert", help="the collector's TLS certificates").add_subparsers(
        dest="server_cert_cmd", required=True)
    s = sc.add_parser("renew", help="issue new server and web certificates from the current CA")
    s.add_argument("--san", action="append", default=[], help="extra DNS name or IP (repeatable)")
    s.set_defaults(func=_handler("collector.fleet_cli:cmd_server_cert_renew"))
    bd = sub.add_parser("bundle", help="signed keyword bundles").add_subparsers(dest="bundle_cmd", required=True)
    s = bd.add_parser("publish", help="build the keyword libraries into a signed bundle and push it to agents")
    s.add_argument("--signatures", default=None, help="directory of library TOML files (default: those shipped)")
    s.add_argument("--version", default=None, help="bundle version (default: the date and time)")
    s.add_argument("--site", default=None, help="only this site's agents (default: every site)")
    s.set_defaults(func=_handler("collector.bundles:cmd_bundle_publish"))
    s = bd.add_parser("list", help="published bundles and how many agents run each")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_handler("collector.bundles:cmd_bundle_list"))

    us = sub.add_parser("user", help="console accounts").add_subparsers(dest="user_cmd", required=True)
    s = us.add_parser("add", help="create an account and print its one-time setup link")
    s.add_argument("username")
    s.add_argument("--role", required=True,
                   choices=["dsl", "deputy-dsl", "headteacher", "technician", "governor", "admin"])
    s.add_argument("--site", action="append", default=[], help="site the user may see (repeatable)")
    s.add_argument("--name", default="", help="display name")
    s.add_argument("--email", default="", help="e-mail for imminent-risk paging and reports")
    s.add_argument("--school-login", default=None,
                   help="their login on school PCs (default: the username); nobody reviews alerts about themselves")
    s.set_defaults(func=_handler("collector.accounts_cli:cmd_user_add"))
    s = us.add_parser("list", help="list accounts")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_handler("collector.accounts_cli:cmd_user_list"))
    s = us.add_parser("disable", help="disable an account")
    s.add_argument("username")
    s.set_defaults(func=_handler("collector.accounts_cli:cmd_user_disable"))
    s = us.add_parser("reset", help="print a new one-time setup link (password and TOTP)")
    s.add_argument("username")
    s.set_defaults(func=_handler("collector.accounts_cli:cmd_user_reset"))

    rp = sub.add_parser("report", help="headteacher and governors' reports").add_subparsers(
        dest="report_cmd", required=True)
    s = rp.add_parser("weekly", help="the weekly summary for the head and SLT (printed, or e-mailed with --send)")
    s.add_argument("--send", action="store_true", help="e-mail it through [smtp] in config.toml")
    s.add_argument("--to", action="append", default=[],
                   help="recipient address (repeatable; default: headteacher and DSL accounts, [reports] weekly_to)")
    s.add_argument("--week-of", default=None, help="any date in the week to report (default: last full week)")
    s.set_defaults(func=_handler("collector.reports.cli:cmd_report_weekly"))
    s = rp.add_parser("governors", help="the termly governors' report, HTML and PDF, aggregate figures only")
    s.add_argument("--term", required=True, choices=["autumn", "spring", "summer"])
    s.add_argument("--year", type=int, required=True)
    s.add_argument("--out", type=Path, required=True, help="directory to write the HTML and PDF into")
    s.add_argument("--site", action="append", default=[], help="only this site (repeatable; default: all)")
    s.set_defaults(func=_handler("collector.reports.cli:cmd_report_governors"))
    s = rp.add_parser("devices", help="per-device figures for a period (default: the last 30 days)")
    s.add_argument("--json", action="store_true", help="one JSON object per device")
    s.add_argument("--from", dest="start", default=None, help="first day, YYYY-MM-DD")
    s.add_argument("--until", default=None, help="last day, YYYY-MM-DD (default: today)")
    s.add_argument("--site", action="append", default=[], help="only this site (repeatable; default: all)")
    s.set_defaults(func=_handler("collector.reports.cli:cmd_report_devices"))

    ky = sub.add_parser("keys", help="keys that protect alert content").add_subparsers(dest="keys_cmd", required=True)
    s = ky.add_parser("rotate-content", help="make a new content key current and re-encrypt stored content")
    s.add_argument("--reseal-only", action="store_true",
                   help="no new key: re-encrypt what is still under an older key (after replicas restarted)")
    s.set_defaults(func=_handler("collector.protect.cli:cmd_keys_rotate_content"))

    rt = sub.add_parser("retention", help="delete alerts past their retention period").add_subparsers(
        dest="retention_cmd", required=True)
    s = rt.add_parser("run", help="delete what config.toml [retention] says is due (audited)")
    s.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_handler("collector.protect.cli:cmd_retention_run"))

    ex = sub.add_parser("export", help="subject access and safeguarding-record exports").add_subparsers(
        dest="export_cmd", required=True)
    s = ex.add_parser("subject", help="everything held about one person (JSON and HTML)")
    s.add_argument("user", help="their school login (as on alerts) or console username")
    s.add_argument("--out", default=".", help="directory for the two files (default: here)")
    s.set_defaults(func=_handler("collector.protect.cli:cmd_export_subject"))
    s = ex.add_parser("concerns", help="confirmed concerns as CSV for CPOMS / MyConcern (docs/export-csv.md)")
    s.add_argument("--since", required=True, help="confirmed on or after this date (YYYY-MM-DD, UTC)")
    s.add_argument("--out", required=True, help="the CSV file to write")
    s.add_argument("--timezone", default="Europe/London", help="school time zone for dates (default Europe/London)")
    s.set_defaults(func=_handler("collector.protect.cli:cmd_export_concerns"))

    au = sub.add_parser("audit", help="the tamper-evident audit log").add_subparsers(dest="audit_cmd", required=True)
    s = au.add_parser("verify", help="check the whole hash chain and its signatures")
    s.set_defaults(func=_handler("collector.audit_cli:cmd_audit_verify"))
    s = au.add_parser("list", help="print audit entries")
    s.add_argument("--json", action="store_true")
    s.add_argument("--limit", type=int, default=50)
    s.set_defaults(func=_handler("collector.audit_cli:cmd_audit_list"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.data is None:
        args.data = default_data_dir()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations narrate every plugin at INFO
    try:
        return int(args.func(args) or 0)
    except CollectorError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
