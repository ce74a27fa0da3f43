"""The pure rules behind fleet operations: clone detection, renewal timing, uninstall code hashing, settings."""

import datetime as dt

import pytest

from agent.service import renewal_due
from collector import fleet
from collector.errors import CollectorError

T0 = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
WINDOW = dt.timedelta(seconds=300)


def _beat(recent: dict, last: str, instance: str, at: dt.datetime) -> tuple[bool, dict]:
    clone = fleet.is_clone(recent, last, instance, at, WINDOW)
    return clone, fleet.remember_instance(recent, instance, at, WINDOW)


def test_alternating_instances_are_a_clone_but_a_restart_is_not():
    recent: dict = {}
    sequence = [("a", 0), ("a", 60), ("b", 90), ("b", 150), ("c", 200), ("c", 260)]  # two restarts
    last = ""
    for instance, second in sequence:
        clone, recent = _beat(recent, last, instance, T0 + dt.timedelta(seconds=second))
        assert not clone
        last = instance
    clone, _ = _beat(recent, "c", "b", T0 + dt.timedelta(seconds=270))  # b comes back while c lives
    assert clone


def test_an_instance_returning_after_the_window_is_a_restart_not_a_clone():
    recent = fleet.remember_instance({}, "a", T0, WINDOW)
    recent = fleet.remember_instance(recent, "b", T0 + dt.timedelta(seconds=10), WINDOW)
    later = T0 + WINDOW + dt.timedelta(seconds=1)
    assert not fleet.is_clone(recent, "b", "a", later, WINDOW)
    assert "a" not in fleet.remember_instance(recent, "b", later, WINDOW)


@pytest.mark.parametrize(("lifetime", "age", "due"), [
    (dt.timedelta(days=90), dt.timedelta(days=59), False),
    (dt.timedelta(days=90), dt.timedelta(days=61), True),      # under 30 days left
    (dt.timedelta(days=365), dt.timedelta(days=300), False),   # 65 days left: 30 days at most is the rule
    (dt.timedelta(days=365), dt.timedelta(days=336), True),
    (dt.timedelta(seconds=30), dt.timedelta(seconds=15), False),
    (dt.timedelta(seconds=30), dt.timedelta(seconds=21), True),  # a third of a short certificate's validity
])
def test_renewal_is_due_with_a_third_of_the_validity_left_at_most_30_days(lifetime, age, due):
    assert renewal_due(T0, T0 + lifetime, T0 + age) is due


def test_uninstall_code_is_salted_and_checked_in_constant_form():
    stored = fleet.hash_code("staff-room-kettle-42")
    assert "staff-room-kettle-42" not in stored
    assert stored != fleet.hash_code("staff-room-kettle-42")  # a fresh salt each time
    assert fleet.code_matches("staff-room-kettle-42", stored)
    assert not fleet.code_matches("staff-room-kettle-43", stored)
    assert not fleet.code_matches("anything", "not-a-hash")


def test_fleet_settings_are_read_and_checked(tmp_path):
    assert fleet.load_fleet_policy(tmp_path) == fleet.FleetPolicy()
    (tmp_path / "config.toml").write_text('[fleet]\nheartbeat_interval_s = 2\nagent_cert_lifetime = "90s"\n')
    policy = fleet.load_fleet_policy(tmp_path)
    assert (policy.heartbeat_interval_s, policy.agent_cert_lifetime) == (2, dt.timedelta(seconds=90))
    assert policy.clone_window == dt.timedelta(seconds=10)
    for bad, needle in (('agent_cert_lifetime = "5s"', "at least 30s"), ('agent_cert_lifetime = "soon"', "90d"),
                        ("heartbeat_interval_s = 0", "between 1 and 3600")):
        (tmp_path / "config.toml").write_text(f"[fleet]\n{bad}\n")
        with pytest.raises(CollectorError, match=needle):
            fleet.load_fleet_policy(tmp_path)
