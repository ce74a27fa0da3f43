"""`audit verify|list`: check the hash chain and read the log from the command line."""

from __future__ import annotations

import argparse
import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import audit
from collector.context import open_store
from collector.errors import CollectorError
from collector.store.models_review import AuditEntry


def cmd_audit_verify(args: argparse.Namespace) -> int:
    with open_store(args) as (cfg, engine), Session(engine) as session:
        key_path = audit.audit_key_path(cfg.data_dir)
        if not key_path.exists():
            # A new key would make every entry look forged; say what is really wrong instead.
            raise CollectorError(f"the audit signing key {key_path} is missing; restore it from backup")
        public_key = audit.load_or_create_key(key_path).public_key()
        result = audit.verify(session, public_key)
    if result.ok:
        print(f"audit log intact: {result.checked} entries, hash chain and signatures verified")
        return 0
    print(f"AUDIT LOG BROKEN at entry {result.first_bad_id}: {result.reason} "
          f"({result.checked} entries read); entries from {result.first_bad_id} on cannot be trusted")
    return 1


def cmd_audit_list(args: argparse.Namespace) -> int:
    with open_store(args) as (_cfg, engine), Session(engine) as session:
        newest = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(max(args.limit, 0))))
        for e in reversed(newest):
            if args.json:
                print(json.dumps({"id": e.id, "at": e.at, "actor": e.actor, "action": e.action, "target": e.target,
                                  "detail": json.loads(e.detail), "hash": e.hash}, ensure_ascii=False))
            else:
                print(f"{e.id:>7}  {e.at[:19]}  {e.actor:20} {e.action:22} {e.target}")
    return 0
