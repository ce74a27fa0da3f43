"""CLI handlers: `keys rotate-content`, `retention run`, `export subject`, `export concerns`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from collector.context import open_store
from collector.errors import CollectorError


def cmd_keys_rotate_content(args: argparse.Namespace) -> int:
    from collector.protect.rotation import rotate_content_key

    with open_store(args) as (cfg, engine):
        result = rotate_content_key(cfg.data_dir, engine, reseal_only=args.reseal_only)
    made = f"new content key {result.key_id} is current" if result.new_key else f"content key {result.key_id}"
    print(f"{made}; {result.resealed} stored value(s) re-encrypted under it")
    if result.new_key:
        print("Older keys stay in the key file for reading. Restart other collector replicas so that they write "
              "under the new key, then run 'keys rotate-content --reseal-only' once more.")
    return 0


def cmd_retention_run(args: argparse.Namespace) -> int:
    from collector.protect.retention import run_retention
    from collector.protect.retention_policy import RetentionPolicy

    with open_store(args) as (cfg, engine):
        policy = RetentionPolicy.from_config(cfg.extra.get("retention", {}))
        report = run_retention(engine, policy, dry_run=args.dry_run, actor="cli")
    if report.skipped:
        raise CollectorError("another retention run holds the lock; try again when it has finished")
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "due": report.counts, "deleted": report.deleted,
                          "alert_ids": report.due}))
        return 0
    total = sum(report.counts.values())
    verb = "would delete" if args.dry_run else "deleted"
    print(f"retention {verb} {total if args.dry_run else report.deleted} alert(s)"
          + "".join(f"\n  {rule}: {n}" for rule, n in report.counts.items()))
    return 0


def cmd_export_subject(args: argparse.Namespace) -> int:
    from collector.protect.subject import export_subject

    if not args.user.strip():
        raise CollectorError("name the person: export subject USER")
    with open_store(args) as (_cfg, engine):
        result = export_subject(engine, args.user, Path(args.out))
    print(f"{result.alerts} alert(s) and {result.accounts} console account(s) found")
    print(f"  {result.json_path}\n  {result.html_path}")
    print("Review both files before disclosure: they may name third parties and exemptions may apply.")
    return 0


def cmd_export_concerns(args: argparse.Namespace) -> int:
    from collector.protect.concerns import export_concerns, parse_since, school_zone

    since = parse_since(args.since)
    zone = school_zone(args.timezone)
    with open_store(args) as (_cfg, engine):
        result = export_concerns(engine, since, Path(args.out), zone)
    print(f"{result.count} confirmed concern(s) since {args.since} written to {result.path} "
          "(layout: docs/export-csv.md)")
    return 0
