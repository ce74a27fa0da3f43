"""Exemptions in the store (SQLite and PostgreSQL): who may approve, how status and the bundle section follow the
clock, groups resolved to devices; and `bundle publish` keeping a site's own rules and exemptions in force."""

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import audit, keywords
from collector.demo_review import ensure_demo_agent
from collector.keywords import ApprovalRefused, FormErrors
from collector.pki import CollectorPki, PkiPaths
from collector.store.db import make_engine
from collector.store.models import Bundle, Site
from signatures.bundle import verify_bundle_with_exemptions
from tests.harness import Collector, store_url

NOW = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def _exemption_form(**extra) -> dict:
    return {"category-extremism": "1", "start": "2026-03-02T09:00", "end": "2026-03-16T16:00",
            "reason": "Year 10 History studies extremism", **extra}


def test_exemptions_follow_the_clock_and_need_a_second_dsl(store_engine, tmp_path):
    audit.use_data_dir(tmp_path)
    with audit.write_session(store_engine) as db:
        site = Site(name="Northfield")
        db.add(site)
        db.flush()
        history, maths = (ensure_demo_agent(db, site, ed25519.Ed25519PrivateKey.generate(), hostname=h).id
                          for h in ("HIST-01", "MATHS-01"))
        group = keywords.add_group(db, site, {"group_name": "History room", f"gdevice-{history}": "1"}, "dsl.amber")
        with pytest.raises(FormErrors) as refused:
            keywords.request_exemption(db, site, _exemption_form(**{"category-astrology": "1"}), "dsl.amber",
                                       now=NOW)
        assert set(refused.value.errors) == {"what", "who"}
        row = keywords.request_exemption(db, site, _exemption_form(**{f"group-{group.id}": "1"}), "dsl.amber",
                                         now=NOW)
        exemption_id = row.id
        for actor, role in (("dsl.amber", "dsl"), ("head.dara", "headteacher")):
            with pytest.raises(ApprovalRefused):
                keywords.approve_exemption(db, site, exemption_id, actor, role, now=NOW)
        assert keywords.bundle_exemptions(db, site.id, NOW) == []  # requested is not approved
        keywords.approve_exemption(db, site, exemption_id, "dsl.basil", "deputy-dsl", now=NOW)
    with Session(store_engine) as db:
        row = db.get(type(row), exemption_id)
        site_id = row.site_id
        assert keywords.exemption_status(row, NOW) == "approved, not started"
        assert keywords.exemption_status(row, NOW + dt.timedelta(days=1)) == "active"
        assert keywords.exemption_status(row, NOW + dt.timedelta(days=15)) == "ended"
        section = keywords.bundle_exemptions(db, site_id, NOW + dt.timedelta(days=1))
        assert section == [{"id": f"ex-{exemption_id}", "categories": ["extremism"], "rules": [], "agents": [history],
                            "start": "2026-03-02T09:00:00+00:00", "end": "2026-03-16T16:00:00+00:00"}]
        assert maths not in section[0]["agents"]
        assert keywords.bundle_exemptions(db, site_id, NOW + dt.timedelta(days=15)) == []
        actions = [e.action for e in audit.entries_for(db, f"site:{site_id}")]
    assert actions == ["keywords.group.add", "keywords.exemption.request", "keywords.exemption.approve"]


def test_publishing_for_every_site_republishes_a_site_with_its_own_rules(tmp_path, db_url):
    collector = Collector(tmp_path / "collector", db_url if db_url.startswith("postgresql") else None).init()
    audit.use_data_dir(collector.data)
    engine = make_engine(store_url(collector))
    try:
        with audit.write_session(engine) as db:
            site = Site(name="Northfield")
            db.add(site)
            db.flush()
            site_id = site.id
            keywords.add_site_rule(db, site, {"category": "bullying", "slug": "crumble-face",
                                              "phrases": "crumble face", "severity": "3", "band-secondary": "1",
                                              "note": "a taunt used at this school"}, "dsl.amber")
        out = collector.cli("bundle", "publish", "--version", "shipped-2").stdout
        assert "published keyword bundle shipped-2" in out and "for Northfield (with its own rules" in out
        with Session(engine) as db:
            newest = db.scalar(select(Bundle).where((Bundle.site_id == site_id) | Bundle.site_id.is_(None))
                               .order_by(Bundle.published_at.desc(), Bundle.id.desc()).limit(1))
            content, signature = newest.content, newest.signature
        key = CollectorPki(PkiPaths(collector.data / "pki")).bundle_private_key().public_key()
        library, _ = verify_bundle_with_exemptions(content, signature, key)
        assert "bullying.site.crumble-face" in {r.id for r in library.rules}
    finally:
        engine.dispose()
