"""Subject access and concern exports on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import stat
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import audit
from collector.protect.concerns import COLUMNS, export_concerns
from collector.protect.subject import export_subject
from collector.store.models_review import AuditEntry, CsamReferral, User

CSAM_WORDS = "invented-csam-indicator-phrase"


def _csam_alert(school, reviewers, user: str) -> str:
    alert_id = school(user=user, matched=CSAM_WORDS, context=f"searching {CSAM_WORDS}", title="Search: csam-title",
                      category="child-sexual-abuse", severity=5)
    reviewers(alert_id, "refer-police", reason=f"quoting {CSAM_WORDS} by mistake", nature="illegal")
    with audit.write_session(school.engine) as s:
        s.add(CsamReferral(alert_id=alert_id, told="police", reference="CAD 4471",
                           told_at=dt.datetime(2026, 11, 20, 10, 30, tzinfo=dt.UTC), recorded_by=reviewers.ids[0]))
    return alert_id


def _audit_entries(engine, action: str) -> list[AuditEntry]:
    with Session(engine) as s:
        return s.scalars(select(AuditEntry).where(AuditEntry.action == action)).all()


def test_subject_export_holds_everything_about_the_person_and_no_csam_content(store_engine, school, reviewers,
                                                                                tmp_path):
    school.engine = store_engine
    mine = school(user="SCHOOL\\Pupil.Quill", matched="<b>hurt</b>", context="i want to <script>x</script>",
                  title="Notes - quill")
    other = school(user="pupil.rowan", matched="not quill's")
    reviewers(mine, "speak-to-pupil", reason="Talked with Quill and their form tutor")
    csam = _csam_alert(school, reviewers, "pupil.quill@school.example")
    with audit.write_session(store_engine) as s:
        s.add(User(username="quill.staffside", role="governor", school_login="pupil.quill", email="q@school.invalid"))

    result = export_subject(store_engine, "pupil.quill", tmp_path / "sar")

    record = json.loads(result.json_path.read_text())
    assert {a["id"] for a in record["alerts"]} == {mine, csam}  # every spelling of the login, no one else's
    assert other not in result.json_path.read_text()
    first = next(a for a in record["alerts"] if a["id"] == mine)
    assert (first["matched"], first["window_title"]) == ("<b>hurt</b>", "Notes - quill")
    assert first["reviews"][0]["reason"] == "Talked with Quill and their form tutor"
    assert [e["action"] for e in first["access_log"]] == ["review.confirm"]
    withheld = next(a for a in record["alerts"] if a["id"] == csam)
    assert withheld["referrals"][0]["reference"] == "CAD 4471"
    [account] = record["console_accounts"]
    assert account["username"] == "quill.staffside" and "password" in account

    html = result.html_path.read_text()
    assert "&lt;script&gt;" in html and "<script>" not in html
    for path in (result.json_path, result.html_path):
        text = path.read_text()
        assert CSAM_WORDS not in text and "csam-title" not in text  # not even in a reviewer's reason
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [entry] = _audit_entries(store_engine, "export.subject")
    assert set(json.loads(entry.detail)["alert_ids"]) == {mine, csam}
    assert "hurt" not in entry.detail


def test_concern_csv_exports_confirmed_concerns_only_and_withholds_csam(store_engine, school, reviewers, tmp_path):
    school.engine = store_engine
    concern = school(user="pupil.sage", matched="=HYPERLINK(\"x\")", context="they said =1+1 to me",
                     title="Chat - sage", app="chat.exe")
    reviewers(concern, "speak-to-pupil", reason="Spoke to Sage")
    false_positive = school(user="pupil.sage", matched="fp")
    reviewers(false_positive, "false-positive")
    no_action = school(user="pupil.sage", matched="nfa")
    reviewers(no_action, "no-further-action")
    school(user="pupil.sage", matched="still open")
    too_old = school(user="pupil.sage", matched="old concern")
    reviewers(too_old, "log-concern", days_ago=400)
    csam = _csam_alert(school, reviewers, "pupil.tam")

    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    out = tmp_path / "concerns.csv"
    result = export_concerns(store_engine, since, out, ZoneInfo("Europe/London"))

    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 byte-order mark: Excel and the importers read it as UTF-8
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert tuple(rows[0].keys()) == COLUMNS
    assert result.count == 2 and {r["wardwatch_id"] for r in rows} == {concern, csam}
    row = next(r for r in rows if r["wardwatch_id"] == concern)
    assert row["matched_text"] == "'=HYPERLINK(\"x\")"  # never a live formula in a spreadsheet
    assert row["outcome"] == "speak-to-pupil" and row["pupil_login"] == "pupil.sage"
    assert row["window_title"] == "Chat - sage" and "Spoke to Sage" in row["action_taken"]
    assert row["confirmed_by"] == "Oak Madeup" and row["assessed_by"] == "Ivy Inventedname"
    withheld = next(r for r in rows if r["wardwatch_id"] == csam)
    assert withheld["category"] == "child-sexual-abuse"
    assert "police" in withheld["summary"].lower() and "CAD 4471" in withheld["referrals"]
    assert CSAM_WORDS.encode() not in raw and b"csam-title" not in raw
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    [entry] = _audit_entries(store_engine, "export.concerns")
    assert json.loads(entry.detail)["count"] == 2
