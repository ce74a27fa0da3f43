"""`user add|list|disable|reset`: console accounts from the command line."""

from __future__ import annotations

import argparse
import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import audit
from collector.accounts import create_user, get_user, issue_setup_link
from collector.config import CollectorConfig
from collector.context import open_store
from collector.store.models_review import User, WebSession

CLI_ACTOR = "cli"


def console_base_url(cfg: CollectorConfig) -> str:
    """Where people open the console: the configured public URL, else what `serve` bound, else the default."""
    return cfg.public_web_url or cfg.served_endpoints().get("web") or f"https://{cfg.web_listen}/"


def cmd_user_add(args: argparse.Namespace) -> int:
    with open_store(args) as (cfg, engine):
        audit.use_data_dir(cfg.data_dir)
        with audit.write_session(engine) as session:
            link = create_user(session, args.username, args.role, args.site, args.name, args.email,
                               school_login=args.school_login)
            audit.append(session, CLI_ACTOR, "user.add", f"user:{link.user.username}",
                         {"role": link.user.role, "sites": [s.name for s in link.user.sites]})
        print(f"Account {link.user.username} ({link.user.role}) created. Send this one-time setup link to them "
              f"privately; it works once, for 72 hours:")
        print(f"  {link.url(console_base_url(cfg))}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    with open_store(args) as (_cfg, engine), Session(engine) as session:
        for u in session.scalars(select(User).order_by(User.username)):
            state = "disabled" if u.disabled else ("active" if u.password_hash else "setup pending")
            item = {"username": u.username, "name": u.display_name, "role": u.role, "email": u.email,
                    "sites": [s.name for s in u.sites], "state": state,
                    "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None}
            print(json.dumps(item, ensure_ascii=False) if args.json else
                  f"{u.username:20} {u.role:12} {state:14} {', '.join(item['sites'])}")
    return 0


def cmd_user_disable(args: argparse.Namespace) -> int:
    with open_store(args) as (cfg, engine):
        audit.use_data_dir(cfg.data_dir)
        with audit.write_session(engine) as session:
            user = get_user(session, args.username)
            user.disabled = True
            # Signed-in sessions end now, not at their idle timeout.
            for s in session.scalars(select(WebSession).where(WebSession.user_id == user.id)):
                session.delete(s)
            audit.append(session, CLI_ACTOR, "user.disable", f"user:{user.username}", {})
    print(f"account {args.username} disabled and signed out")
    return 0


def cmd_user_reset(args: argparse.Namespace) -> int:
    with open_store(args) as (cfg, engine):
        audit.use_data_dir(cfg.data_dir)
        with audit.write_session(engine) as session:
            user = get_user(session, args.username)
            link = issue_setup_link(user)
            user.disabled = False
            for s in session.scalars(select(WebSession).where(WebSession.user_id == user.id)):
                session.delete(s)
            audit.append(session, CLI_ACTOR, "user.reset", f"user:{user.username}", {})
        print(f"Password and authenticator for {user.username} cleared. New one-time setup link (72 hours):")
        print(f"  {link.url(console_base_url(cfg))}")
    return 0
