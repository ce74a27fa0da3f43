"""Publishing keyword bundles: build from the libraries, sign with the collector's bundle key, push to agents."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import audit
from collector.context import open_store
from collector.errors import CollectorError
from collector.pki import CollectorPki, PkiPaths
from collector.store.models import Agent, AgentCommand, Bundle, Site
from signatures.bundle import build_bundle, sign_bundle
from signatures.loader import default_signatures_dir
from signatures.schema import LibraryError


def publish_bundle(session: Session, pki: CollectorPki, libs_dir: Path, version: str, site: Site | None,
                   actor: str, site_documents: Iterable[Mapping[str, Any]] = (),
                   exemptions: Iterable[Mapping[str, Any]] = ()) -> tuple[Bundle, int]:
    """Build, sign and store a bundle; queue `update_bundle` for the agents it applies to. Returns (bundle, agents
    told). `site_documents` (a school's own rules and allows) and `exemptions` go into the same signed bundle (see
    collector.keywords). Raises LibraryError if a library is invalid: nothing is published then."""
    if session.scalar(select(Bundle.id).where(Bundle.version == version)) is not None:
        raise CollectorError(f"bundle version {version!r} exists already; versions are never reused")
    site_documents, exemptions = list(site_documents), list(exemptions)
    content = build_bundle(libs_dir, version, site_documents, exemptions)
    bundle = Bundle(version=version, site_id=site.id if site else None, content=content,
                    signature=sign_bundle(content, pki.bundle_private_key()), published_by=actor)
    session.add(bundle)
    agents = select(Agent.id).where(Agent.status == "active")
    if site is not None:
        agents = agents.where(Agent.site_id == site.id)
    told = 0
    for agent_id in session.scalars(agents):
        session.add(AgentCommand(id=str(uuid.uuid4()), agent_id=agent_id, kind="update_bundle",
                                 payload={"version": version}))
        told += 1
    audit.append(session, actor=actor, action="bundle.publish", target=version,
                 detail={"site": site.name if site else "all", "agents": told, "bytes": len(content),
                         "site_entries": len(site_documents), "exemptions": len(exemptions)})
    return bundle, told


def default_version() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y.%m.%d-%H%M%S}"


def cmd_bundle_publish(args: argparse.Namespace) -> int:
    with open_store(args) as (cfg, engine), audit.write_session(engine) as session:
        site = None
        if args.site:
            site = session.scalar(select(Site).where(Site.name == args.site))
            if site is None:
                raise CollectorError(f"no site named {args.site!r}")
        try:
            libs = Path(args.signatures) if args.signatures else default_signatures_dir()
            if not libs.is_dir():
                raise CollectorError(f"{libs} is not a directory of keyword libraries")
            bundle, told, site_versions = _publish(session, CollectorPki(PkiPaths(cfg.pki_dir)), libs,
                                                   args.version or default_version(), site)
        except LibraryError as exc:
            raise CollectorError(f"not published: {exc}") from exc
        version, size = bundle.version, len(bundle.content)
    print(f"published keyword bundle {version} ({size} bytes, signed) for "
          f"{args.site or 'every site'}; {told} agent(s) told to fetch it")
    for name, site_version, site_told in site_versions:
        print(f"published keyword bundle {site_version} for {name} (with its own rules and exemptions); "
              f"{site_told} agent(s) told to fetch it")
    return 0


def _publish(session: Session, pki: CollectorPki, libs: Path, version: str, site: Site | None
             ) -> tuple[Bundle, int, list[tuple[str, str, int]]]:
    """A site's bundle always carries its own rules, allows and exemptions. Agents take the newest bundle that
    applies to their site, so after a bundle for every site, each site with entries of its own gets its own again
    (else publishing new shipped libraries would silently end a school's exemptions and rules)."""
    from collector import keywords  # keywords builds on this module

    if site is not None:
        bundle, told = keywords.publish_site_bundle(session, pki, site, "cli", libs, version=version)
        return bundle, told, []
    bundle, told = publish_bundle(session, pki, libs, version, None, actor="cli")
    extra = []
    for own in keywords.sites_with_own_entries(session):
        site_bundle, site_told = keywords.publish_site_bundle(session, pki, own, "cli", libs)
        extra.append((own.name, site_bundle.version, site_told))
    return bundle, told, extra


def cmd_bundle_list(args: argparse.Namespace) -> int:
    with open_store(args) as (_cfg, engine), Session(engine) as session:
        running: dict[str, int] = {}
        for version in session.scalars(select(Agent.bundle_version).where(Agent.status == "active")):
            running[version] = running.get(version, 0) + 1
        for b in session.scalars(select(Bundle).order_by(Bundle.published_at)):
            item = {"version": b.version, "site_id": b.site_id, "bytes": len(b.content),
                    "published_at": b.published_at.isoformat(), "published_by": b.published_by,
                    "agents_running": running.get(b.version, 0)}
            print(json.dumps(item) if args.json else
                  f"{b.version:24} {item['bytes']:>9} bytes  {item['agents_running']:>5} agent(s) running it  "
                  f"published {item['published_at'][:19]} by {b.published_by}")
    return 0
