"""A school's own keyword rules, allow entries, device groups and time-boxed exemptions, and publishing them.

Rules are validated by `signatures.schema.parse_document`, the same check every TOML library passes; this module only
turns form fields into the TOML-shaped dict and the schema's message into the form field it is about. Publishing
builds the shipped libraries plus the site's rules, allows and approved exemptions into one signed bundle
(collector.bundles.publish_bundle) and tells the site's agents to fetch it.

Exemptions: a DSL or deputy DSL requests one; a DIFFERENT DSL or deputy approves it (the two-person rule the review
follows too), and approving publishes it. The agent enforces the start and end by its own clock, so an exemption
expires with no word from the collector. Times on the forms are UTC.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import audit
from collector.bundles import publish_bundle
from collector.pki import CollectorPki
from collector.store.models import Agent, Bundle, DeviceGroup, KeywordExemption, Site, SiteAllow, SiteRule
from signatures.bundle import with_site_rules
from signatures.loader import default_signatures_dir, load_library
from signatures.schema import (
    ALLOW_CATEGORY,
    BANDS,
    CATEGORIES,
    SCHEMA_VERSION,
    Library,
    LibraryError,
    parse_document,
    rule_to_dict,
)

APPROVER_ROLES = frozenset({"dsl", "deputy-dsl"})
MAX_EXEMPTION = dt.timedelta(days=366)
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_ERROR_PREFIX = re.compile(r"^[^:]*:\d+: (?:rule [^:]+: )?")
# Which form field a schema message is about, first match wins ("rule id ... must start" is about the id).
_FIELD_WORDS = (("duplicate rule id", "slug"), ("rule id", "slug"), ("context", "context"),
                ("unknown category", "category"), ("unknown table", "category"), ("allow", "allow"),
                ("phrases", "phrases"), ("severity", "severity"), ("bands", "bands"), ("lang", "lang"),
                ("mode", "mode"), ("note", "note"))


class FormErrors(Exception):
    """Field name -> what is wrong with it; shown beside each field, nothing saved."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@functools.lru_cache(maxsize=4)
def shipped_library(libs_dir: Path) -> Library:
    """The libraries shipped with the collector; immutable, so loaded once per process."""
    return load_library(libs_dir)


def site_rule_id(category: str, slug: str) -> str:
    """Ids must start with the category (schema rule); `.site.` marks a school's own and keeps it off shipped ids."""
    return f"{category}.site.{slug}"


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").replace("\r", "").split("\n") if line.strip()]


def _words(text: str) -> list[str]:
    return [w.strip() for w in re.split(r"[,\n]", text or "") if w.strip()]


def _number_or_text(text: str) -> int | str:
    text = (text or "").strip()
    return int(text) if re.fullmatch(r"-?\d{1,6}", text) else text


def field_for(message: str) -> tuple[str, str]:
    """(form field, message without the `where:line: rule id:` prefix) for a LibraryError message."""
    plain = _ERROR_PREFIX.sub("", message)
    lowered = plain.lower()
    for word, field in _FIELD_WORDS:
        if word in lowered:
            return field, plain
    return "slug", plain


def rule_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """The TOML-shaped rule dict the form describes; nothing is checked here beyond the form's own slug."""
    category, slug = form.get("category", "").strip(), form.get("slug", "").strip()
    raw: dict[str, Any] = {"id": site_rule_id(category, slug), "phrases": _lines(form.get("phrases", "")),
                           "severity": _number_or_text(form.get("severity", "")),
                           "bands": [b for b in BANDS if form.get(f"band-{b}")],
                           "mode": form.get("mode", "word").strip() or "word",
                           "lang": form.get("lang", "en").strip() or "en", "note": form.get("note", "").strip()}
    context_any, context_categories = _lines(form.get("context_any", "")), _words(form.get("context_categories", ""))
    if context_any or context_categories:
        raw["context"] = {"any": context_any, "categories": context_categories,
                          "within": _number_or_text(form.get("context_within", "") or "8")}
    allow = _lines(form.get("allow", ""))
    if allow:
        raw["allow"] = allow
    return raw


def _rule_document(category: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    return {"library": {"category": category, "schema": SCHEMA_VERSION}, "rule": [dict(raw)]}


def _allow_document(phrases: list[str], note: str) -> dict[str, Any]:
    return {"library": {"category": ALLOW_CATEGORY, "schema": SCHEMA_VERSION},
            "allow": [{"phrases": phrases, "note": note}]}


def site_documents(db: Session, site_id: int) -> list[dict[str, Any]]:
    """The site's rules and allow entries as TOML-shaped library documents, oldest first."""
    docs = [_rule_document(r.category, r.definition)
            for r in db.scalars(select(SiteRule).where(SiteRule.site_id == site_id).order_by(SiteRule.id))]
    docs += [_allow_document(list(a.phrases), a.note)
             for a in db.scalars(select(SiteAllow).where(SiteAllow.site_id == site_id).order_by(SiteAllow.id))]
    return docs


def _check_documents(db: Session, site_id: int, new_document: dict[str, Any], libs_dir: Path | None) -> None:
    """Schema checks on the new document, then the whole set (shipped + site + new) for ids used twice."""
    parse_document(new_document, "rule", lambda _rule_id: 1)
    with_site_rules(shipped_library(libs_dir or default_signatures_dir()), [*site_documents(db, site_id),
                                                                            new_document])


def add_site_rule(db: Session, site: Site, form: Mapping[str, str], actor: str,
                  libs_dir: Path | None = None) -> SiteRule:
    """Validate and keep one rule; raises FormErrors (nothing saved) if the schema refuses it."""
    slug = form.get("slug", "").strip()
    if not _SLUG.match(slug):
        raise FormErrors({"slug": "use lower-case letters, digits and single hyphens, e.g. nickname-taunts"})
    raw = rule_from_form(form)
    category = form.get("category", "").strip()
    document = _rule_document(category, raw)
    try:
        _check_documents(db, site.id, document, libs_dir)
    except LibraryError as exc:
        field, message = field_for(str(exc))
        raise FormErrors({field: message}) from None
    # Kept in the normalised form the schema produced, so the bundle round-trips exactly.
    rule = parse_document(document, "rule", lambda _rule_id: 1)[2][0]
    row = SiteRule(site_id=site.id, rule_id=rule.id, category=category, definition=rule_to_dict(rule),
                   created_by=actor)
    db.add(row)
    db.flush()
    audit.append(db, actor, "keywords.rule.add", f"site:{site.id}",
                 {"rule": rule.id, "severity": rule.severity, "phrases": len(rule.phrases)})
    return row


def add_site_allow(db: Session, site: Site, form: Mapping[str, str], actor: str,
                   libs_dir: Path | None = None) -> SiteAllow:
    phrases, note = _lines(form.get("allow_phrases", "")), form.get("allow_note", "").strip()
    try:
        _check_documents(db, site.id, _allow_document(phrases, note), libs_dir)
    except LibraryError as exc:
        raise FormErrors({"allow_phrases": field_for(str(exc))[1]}) from None
    if not note:
        raise FormErrors({"allow_note": "say why these phrases are harmless here"})
    row = SiteAllow(site_id=site.id, phrases=phrases, note=note, created_by=actor)
    db.add(row)
    db.flush()
    audit.append(db, actor, "keywords.allow.add", f"site:{site.id}", {"allow": row.id, "phrases": len(phrases)})
    return row


def site_devices(db: Session, site_id: int) -> list[Agent]:
    return list(db.scalars(select(Agent).where(Agent.site_id == site_id, Agent.status == "active")
                           .order_by(Agent.hostname, Agent.id)))


def site_groups(db: Session, site_id: int) -> list[DeviceGroup]:
    return list(db.scalars(select(DeviceGroup).where(DeviceGroup.site_id == site_id).order_by(DeviceGroup.name)))


def _chosen(form: Mapping[str, str], prefix: str) -> list[str]:
    return sorted(k[len(prefix):] for k, v in form.items() if k.startswith(prefix) and v)


def add_group(db: Session, site: Site, form: Mapping[str, str], actor: str) -> DeviceGroup:
    name = form.get("group_name", "").strip()
    devices = {a.id for a in site_devices(db, site.id)}
    chosen = _chosen(form, "gdevice-")
    errors = {}
    if not name or len(name) > 100:
        errors["group_name"] = "give the group a name of 1 to 100 characters"
    elif any(g.name == name for g in site_groups(db, site.id)):
        errors["group_name"] = f"there is a group called {name!r} already"
    if not chosen or any(a not in devices for a in chosen):
        errors["group_devices"] = "choose one or more of this site's devices"
    if errors:
        raise FormErrors(errors)
    group = DeviceGroup(site_id=site.id, name=name, agent_ids=chosen, created_by=actor)
    db.add(group)
    db.flush()
    audit.append(db, actor, "keywords.group.add", f"site:{site.id}", {"group": group.id, "devices": len(chosen)})
    return group


def _utc(text: str) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat((text or "").strip())
    except ValueError:
        return None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def request_exemption(db: Session, site: Site, form: Mapping[str, str], actor: str, now: dt.datetime | None = None,
                      libs_dir: Path | None = None) -> KeywordExemption:
    """Record a request; it does nothing on any device until a different DSL approves it."""
    now = now or dt.datetime.now(dt.UTC)
    errors: dict[str, str] = {}
    categories = _chosen(form, "category-")
    rules = _words(form.get("rules", ""))
    known_rules = {r.id for r in shipped_library(libs_dir or default_signatures_dir()).rules}
    known_rules |= set(db.scalars(select(SiteRule.rule_id).where(SiteRule.site_id == site.id)))
    if not categories and not rules:
        errors["what"] = "choose a category or name a rule id"
    elif unknown := [c for c in categories if c not in CATEGORIES] + [r for r in rules if r not in known_rules]:
        errors["what"] = f"no such category or rule: {unknown[0]}"
    devices = {a.id for a in site_devices(db, site.id)}
    groups = {str(g.id) for g in site_groups(db, site.id)}
    agent_ids, group_ids = _chosen(form, "device-"), _chosen(form, "group-")
    if not agent_ids and not group_ids:
        errors["who"] = "choose the devices or groups it applies to"
    elif any(a not in devices for a in agent_ids) or any(g not in groups for g in group_ids):
        errors["who"] = "choose only this site's devices and groups"
    start, end = _utc(form.get("start", "")), _utc(form.get("end", ""))
    if start is None:
        errors["start"] = "give a date and time, e.g. 2026-03-02T08:00"
    if end is None:
        errors["end"] = "give a date and time, e.g. 2026-03-16T16:00"
    elif start is not None and not start < end <= start + MAX_EXEMPTION:
        errors["end"] = "the end must be after the start, and at most a year later"
    elif end <= now:
        errors["end"] = "the end is in the past"
    reason = form.get("reason", "").strip()
    if not reason:
        errors["reason"] = "say why, e.g. Year 10 History studies extremism"
    if errors:
        raise FormErrors(errors)
    row = KeywordExemption(site_id=site.id, categories=categories, rules=rules, agent_ids=agent_ids,
                           group_ids=[int(g) for g in group_ids], starts_at=start, ends_at=end, reason=reason,
                           requested_by=actor, requested_at=now)
    db.add(row)
    db.flush()
    audit.append(db, actor, "keywords.exemption.request", f"site:{site.id}", _exemption_detail(row))
    return row


def _exemption_detail(row: KeywordExemption) -> dict[str, Any]:
    return {"exemption": row.id, "categories": list(row.categories), "rules": list(row.rules),
            "devices": len(row.agent_ids), "groups": list(row.group_ids), "start": _iso(row.starts_at),
            "end": _iso(row.ends_at)}


def _aware(when: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; every stored time is UTC.
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def _iso(when: dt.datetime) -> str:
    return _aware(when).isoformat()


class ApprovalRefused(Exception):
    pass


def approve_exemption(db: Session, site: Site, exemption_id: int, actor: str, actor_role: str,
                      now: dt.datetime | None = None) -> KeywordExemption:
    now = now or dt.datetime.now(dt.UTC)
    row = db.get(KeywordExemption, exemption_id)
    if row is None or row.site_id != site.id:
        raise ApprovalRefused("There is no such exemption on this site.")
    if actor_role not in APPROVER_ROLES:
        raise ApprovalRefused("Only a DSL or deputy DSL approves an exemption.")
    if row.approved_by:
        raise ApprovalRefused("This exemption is approved already.")
    if row.requested_by == actor:
        raise ApprovalRefused("A different DSL must approve an exemption you requested.")
    if _aware(row.ends_at) <= now:
        raise ApprovalRefused("This exemption has ended already.")
    row.approved_by, row.approved_at = actor, now
    audit.append(db, actor, "keywords.exemption.approve", f"site:{site.id}", _exemption_detail(row))
    return row


def exemption_status(row: KeywordExemption, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    if not row.approved_by:
        return "awaiting approval"
    if _aware(row.ends_at) <= now:
        return "ended"
    return "active" if _aware(row.starts_at) <= now else "approved, not started"


def bundle_exemptions(db: Session, site_id: int, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Approved exemptions not yet ended, groups resolved to agent ids (as the agent expects them)."""
    now = now or dt.datetime.now(dt.UTC)
    groups = {g.id: g.agent_ids for g in site_groups(db, site_id)}
    out = []
    for row in db.scalars(select(KeywordExemption).where(KeywordExemption.site_id == site_id,
                                                         KeywordExemption.approved_by.is_not(None))
                          .order_by(KeywordExemption.id)):
        if _aware(row.ends_at) <= now:
            continue
        agents = set(row.agent_ids).union(*(groups.get(g, []) for g in row.group_ids))
        out.append({"id": f"ex-{row.id}", "categories": list(row.categories), "rules": list(row.rules),
                    "agents": sorted(agents), "start": _iso(row.starts_at), "end": _iso(row.ends_at)})
    return out


def site_entries(db: Session, site_id: int, now: dt.datetime | None = None
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What a site's bundle adds to the shipped libraries: (rule and allow documents, exemptions)."""
    return site_documents(db, site_id), bundle_exemptions(db, site_id, now)


def sites_with_own_entries(db: Session, now: dt.datetime | None = None) -> list[Site]:
    return [site for site in db.scalars(select(Site).order_by(Site.id)) if any(site_entries(db, site.id, now))]


def site_bundle_version(site: Site, now: dt.datetime | None = None) -> str:
    # A random tail: two publishes in one second must not collide (versions are never reused).
    return f"site{site.id}-{(now or dt.datetime.now(dt.UTC)):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def publish_site_bundle(db: Session, pki: CollectorPki, site: Site, actor: str, libs_dir: Path | None = None,
                        now: dt.datetime | None = None, version: str | None = None) -> tuple[Bundle, int]:
    """Shipped libraries + the site's rules, allows and approved exemptions, signed and pushed to its agents."""
    documents, exemptions = site_entries(db, site.id, now)
    return publish_bundle(db, pki, libs_dir or default_signatures_dir(), version or site_bundle_version(site, now),
                          site, actor, site_documents=documents, exemptions=exemptions)


@dataclass(frozen=True)
class Adoption:
    version: str
    published_at: dt.datetime
    published_by: str
    devices: int


def bundle_adoption(db: Session, site_id: int) -> tuple[list[Adoption], int]:
    """Per bundle that applies to the site (newest first): how many of its active devices confirm running it; and
    how many devices the site has."""
    running: dict[str, int] = {}
    devices = site_devices(db, site_id)
    for agent in devices:
        running[agent.bundle_version] = running.get(agent.bundle_version, 0) + 1
    bundles = db.scalars(select(Bundle).where((Bundle.site_id == site_id) | Bundle.site_id.is_(None))
                         .order_by(Bundle.published_at.desc(), Bundle.id.desc()))
    return [Adoption(b.version, b.published_at, b.published_by, running.get(b.version, 0)) for b in bundles], \
        len(devices)
