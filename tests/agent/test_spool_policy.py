"""The spool's drop rules, as pure functions."""

from agent.spool_policy import Queued, make_room, plan_admission


def q(seq, severity, size=100):
    return Queued(seq, severity, size)


def test_room_enough_admits_without_victims():
    assert plan_admission([q(1, 1)], 2, 100, 1000).victims == ()


def test_lowest_severity_then_oldest_is_dropped_first():
    queued = [q(1, 3), q(2, 1), q(3, 2), q(4, 1)]
    plan = plan_admission(queued, 3, 200, 400)
    assert plan.admit and plan.victims == (2, 4)


def test_high_severity_is_never_a_victim_and_is_admitted_over_the_limit():
    queued = [q(1, 4), q(2, 5), q(3, 1)]
    plan = plan_admission(queued, 5, 300, 300)
    assert plan.admit and plan.victims == (3,)


def test_low_severity_newcomer_is_refused_rather_than_evict_more_severe_alerts():
    plan = plan_admission([q(1, 3), q(2, 4)], 2, 100, 200)
    assert not plan.admit and plan.victims == ()


def test_make_room_skips_protected_alerts():
    assert make_room([q(1, 5), q(2, 2), q(3, 4), q(4, 1)], 150) == (4, 2)
    assert make_room([q(1, 4), q(2, 5)], 10) == ()
