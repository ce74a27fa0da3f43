"""Detection quality on tests/data/detect-corpus.tsv, run against the real libraries shipped in signatures/."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.detect import Engine
from signatures.loader import default_signatures_dir
from signatures.schema import CATEGORIES

CORPUS = Path(__file__).resolve().parents[1] / "data" / "detect-corpus.tsv"
MIN_RECALL = 0.95
ALERT_SEVERITY = 2  # severity 1 is informational and never raises an alert


def read_corpus() -> list[tuple[set[str], str, str]]:
    rows = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        expected, source, text = line.split("\t", 2)
        rows.append((set() if expected == "none" else set(expected.split("|")), source, text))
    return rows


def test_corpus_is_balanced_and_covers_every_category():
    rows = read_corpus()
    concerning = [r for r in rows if r[0]]
    innocent = [r for r in rows if not r[0]]
    assert len(rows) >= 300
    assert len(innocent) >= len(concerning)
    assert set().union(*(r[0] for r in concerning)) == set(CATEGORIES)
    assert {r[1] for r in rows} == {"typed", "title"}
    assert any(not t.isascii() for _, _, t in concerning)  # look-alikes and other scripts are in it


def test_recall_and_no_innocent_alerts_on_the_shipped_libraries():
    libs = default_signatures_dir()
    missing = sorted(c for c in CATEGORIES if not (libs / f"{c}.toml").exists())
    if missing:
        pytest.skip(f"keyword libraries not written yet: {', '.join(missing)}")
    engine = Engine.from_signatures(libs, profile="secondary")
    rows = read_corpus()
    missed, false_alerts = [], []
    concerning = 0
    for expected, source, text in rows:
        alerts = {m.category for m in engine.scan(text, source=source) if m.severity >= ALERT_SEVERITY}
        if expected:
            concerning += 1
            if not alerts & expected:
                missed.append(text)
        elif alerts:
            false_alerts.append((text, sorted(alerts)))
    recall = 1 - len(missed) / concerning
    assert recall >= MIN_RECALL, f"recall {recall:.3f}; missed: {missed}"
    assert false_alerts == []
