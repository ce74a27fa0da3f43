"""`uninstall-code set`, `agents decommission`, `ca rotate|status`, `server-cert renew`: fleet tools."""

from __future__ import annotations

import argparse
import datetime as dt
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import fleet
from collector.config import load_config
from collector.context import open_store
from collector.errors import CollectorError
from collector.pki import PkiPaths, ca_pin
from collector.store.models import Agent


def _audit(session: Session, cfg, action: str, target: str, detail: dict) -> None:
    """Record in the audit log when the review console's audit module is present."""
    try:
        from collector import audit
    except ImportError:
        return
    if hasattr(audit, "use_data_dir"):
        audit.use_data_dir(cfg.data_dir)
    audit.append(session, actor="cli", action=action, target=target, detail=detail)


def cmd_uninstall_code_set(args: argparse.Namespace) -> int:
    code = args.code or "-".join(secrets.token_hex(2) for _ in range(4))
    with open_store(args) as (cfg, engine), Session(engine) as session, session.begin():
        fleet.set_uninstall_code(session, code)
        _audit(session, cfg, "fleet.uninstall-code.set", "uninstall-code", {})
    if args.code:
        print("Uninstall code set. Only its hash is stored; keep the code with the technicians.")
    else:
        print("Uninstall code set. It is shown once and only its hash is stored; keep it with the technicians:")
        print(code)
    return 0


def cmd_agents_decommission(args: argparse.Namespace) -> int:
    """For a PC that is gone (broken, sold) and cannot run its own uninstall: stop accepting its certificate."""
    with open_store(args) as (cfg, engine), Session(engine) as session, session.begin():
        agent = session.get(Agent, args.agent_id)
        if agent is None:
            raise CollectorError(f"no agent with id {args.agent_id!r} (see 'agents list')")
        fleet.decommission(agent, dt.datetime.now(dt.UTC))
        _audit(session, cfg, "agent.decommission", agent.id, {"hostname": agent.hostname})
    print(f"agent {args.agent_id} marked removed: its certificate is refused from now on")
    return 0


def _paths(args: argparse.Namespace) -> PkiPaths:
    return PkiPaths(load_config(args.data, getattr(args, "db", None)).pki_dir)


def cmd_ca_rotate(args: argparse.Namespace) -> int:
    paths = _paths(args)
    if args.finish:
        cert = fleet.rotate_ca_finish(paths, fleet.server_sans(paths))
        print(f"CA rotation finished: {cert.subject.rfc4514_string()} is now the only CA and issued new server "
              "and web certificates. Restart 'serve'. New enrolment strings carry the new pin.")
        return 0
    cert = fleet.rotate_ca_start(paths)
    print(f"New CA made: {cert.subject.rfc4514_string()}. Restart 'serve': agents then renew their certificates "
          "under the new CA and learn to trust it, without re-enrolling.")
    print("Watch 'wardwatch-collector ca status'; when every agent has moved (or after the overlap you allow, "
          "e.g. 30 days), run: wardwatch-collector ca rotate --finish")
    return 0


def cmd_ca_status(args: argparse.Namespace) -> int:
    paths = _paths(args)
    current = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    print(f"CA: {current.subject.rfc4514_string()} (until {current.not_valid_after_utc:%Y-%m-%d})")
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    print(f"server certificate: until {server.not_valid_after_utc:%Y-%m-%d}")
    if not paths.ca_next_cert.exists():
        print("no rotation under way")
        return 0
    new_ca = x509.load_pem_x509_certificate(paths.ca_next_cert.read_bytes())
    new_id = ca_pin(new_ca.public_bytes(serialization.Encoding.DER))[:16]
    with open_store(args) as (_cfg, engine), Session(engine) as session:
        issuers = list(session.scalars(select(Agent.cert_ca).where(Agent.status == "active")))
    moved = sum(1 for issuer in issuers if issuer == new_id)
    print(f"rotation under way to {new_ca.subject.rfc4514_string()}: {moved} of {len(issuers)} active agent(s) "
          "hold a certificate from the new CA")
    return 0


def cmd_server_cert_renew(args: argparse.Namespace) -> int:
    paths = _paths(args)
    sans = fleet.server_sans(paths) + list(args.san)
    cert = fleet.renew_server_certificates(paths, sans)
    print(f"New server and web certificates until {cert.not_valid_after_utc:%Y-%m-%d}. Restart 'serve'; agents "
          "trust the CA, so they need nothing.")
    return 0
