"""Site policy: default severities, per-site overrides, approved serials, and clear errors for bad settings."""

from __future__ import annotations

import pytest

from agent.capture.media import MediaPolicy, MediaReport
from agent.errors import AgentError


def report(state: str, serial: str | None = None) -> MediaReport:
    return MediaReport(path="/dev/sdb1", state=state, serial=serial)


def test_default_severities_follow_the_school_policy():
    policy = MediaPolicy()
    assert policy.severity_for(report("not-encrypted")) == 3
    assert policy.severity_for(report("unknown-high-entropy")) == 2
    assert policy.severity_for(report("no-access")) == 2
    assert policy.severity_for(report("encrypted-locked")) is None
    assert policy.severity_for(report("encrypted-unlocked")) is None


def test_approved_serials_are_inventory_only_whatever_the_state():
    policy = MediaPolicy(approved_serials={" ak0042 ", ""})
    assert policy.severity_for(report("not-encrypted", serial="AK0042")) is None
    assert policy.severity_for(report("not-encrypted", serial="AK0043")) == 3
    assert policy.severity_for(report("not-encrypted", serial=None)) == 3


def test_site_overrides_by_group_then_by_state():
    policy = MediaPolicy(severities={"not-encrypted": 4, "unknown": 1, "no-access": 3, "encrypted-unlocked": 1})
    assert policy.severity_for(report("not-encrypted")) == 4
    assert policy.severity_for(report("unknown-high-entropy")) == 1
    assert policy.severity_for(report("no-access")) == 3
    assert policy.severity_for(report("encrypted-unlocked")) == 1
    assert policy.severity_for(report("encrypted-locked")) is None


@pytest.mark.parametrize(
    ("severities", "message"),
    [
        ({"plain": 3}, "unknown state 'plain'"),
        ({"not-encrypted": 6}, "must be 1-5 or none"),
        ({"unknown": True}, "must be 1-5 or none"),
    ],
)
def test_bad_site_settings_are_clear_errors(severities, message):
    with pytest.raises(AgentError, match=message):
        MediaPolicy(severities=severities)
