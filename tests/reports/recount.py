"""Figures recomputed from first principles from `alerts list --json` rows, to check the report code against."""

import datetime as dt
import statistics
from collections import Counter

OPEN = {"new", "awaiting-second", "disputed"}


def parse_time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def recompute(rows: list[dict]) -> dict:
    """The figures of a set of `alerts list --json` rows, computed here from first principles."""
    counted = [r for r in rows if r["kind"] in ("keyword", "usb", "coverage")]
    first = [(parse_time(r["first_review_at"]) - parse_time(r["received_at"])).total_seconds()
             for r in counted if r["first_review_at"]]
    second = [(parse_time(r["second_review_at"]) - parse_time(r["received_at"])).total_seconds()
              for r in counted if r["second_review_at"]]
    return {
        "total": len(counted),
        "keyword_alerts": sum(r["kind"] == "keyword" for r in counted),
        "by_category": dict(Counter(r["category"] for r in counted if r["kind"] == "keyword")),
        "by_severity": {str(k): v for k, v in sorted(Counter(r["severity"] for r in counted).items())},
        "by_outcome": dict(Counter(r["outcome"] for r in counted if r["outcome"])),
        "open": sum(r["state"] in OPEN for r in counted),
        "closed": sum(r["state"] == "closed" for r in counted),
        "escalated": sum(r["state"] == "escalated" for r in counted),
        "usb_events": sum(r["kind"] == "usb" for r in counted),
        "coverage_alerts": sum(r["kind"] == "coverage" for r in counted),
        "median_first_review_s": statistics.median(first) if first else None,
        "median_second_review_s": statistics.median(second) if second else None,
    }


