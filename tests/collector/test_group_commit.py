"""The group committer: one transaction for what is waiting, each caller answered with its own result."""

import threading

import pytest

from collector.store.group_commit import GroupCommitter, gather_delay, smoothed_gap


class Recorder:
    """A commit function that records the groups it was given and answers each item with its double."""

    def __init__(self, fail_on: object = None) -> None:
        self.groups: list[list] = []
        self.fail_on = fail_on

    def __call__(self, items: list) -> list:
        self.groups.append(list(items))
        if self.fail_on in items:
            raise RuntimeError("the transaction failed")
        return [item * 2 for item in items]


def test_items_waiting_together_are_committed_together_and_each_gets_its_own_result():
    commit = Recorder()
    committer = GroupCommitter(commit, "test-committer")
    with committer.holding():
        futures = [committer.submit(n) for n in range(5)]
    assert [f.result(timeout=10) for f in futures] == [0, 2, 4, 6, 8]
    assert commit.groups == [[0, 1, 2, 3, 4]]


def test_take_limits_a_group_and_the_rest_follow_in_order():
    commit = Recorder()
    committer = GroupCommitter(commit, "test-committer", take=lambda items: min(2, len(items)))
    with committer.holding():
        futures = [committer.submit(n) for n in range(5)]
    assert [f.result(timeout=10) for f in futures] == [0, 2, 4, 6, 8]
    assert commit.groups == [[0, 1], [2, 3], [4]]


def test_a_failed_commit_fails_every_item_in_its_group_and_the_thread_carries_on():
    commit = Recorder(fail_on=3)
    committer = GroupCommitter(commit, "test-committer")
    with committer.holding():
        failed = [committer.submit(n) for n in (1, 3)]
    for future in failed:
        with pytest.raises(RuntimeError, match="transaction failed"):
            future.result(timeout=10)
    assert committer.submit(4).result(timeout=10) == 8


def test_a_cancelled_item_does_not_stop_its_group_being_answered():
    commit = Recorder()
    committer = GroupCommitter(commit, "test-committer")
    with committer.holding():
        gone, kept = committer.submit(1), committer.submit(2)
        assert gone.cancel()  # its caller hung up before the commit
    assert kept.result(timeout=10) == 4
    assert commit.groups == [[1, 2]]  # the hung-up caller's item was committed all the same


def test_a_steady_trickle_waits_for_company_up_to_the_gather_time():
    # Arriving every 10 ms, the oldest has waited 50 ms of 200: it waits 150 ms more, then no longer.
    assert gather_delay(0.2, 0.01, 0.05) == pytest.approx(0.15)
    assert gather_delay(0.2, 0.01, 0.2) == 0.0
    assert gather_delay(0.2, 0.01, 0.5) == 0.0


def test_items_arriving_slowly_or_without_a_gather_time_commit_at_once():
    assert gather_delay(0.2, 0.1, 0.0) == 0.0  # one per 100 ms: not more often than twice per 200 ms
    assert gather_delay(0.2, None, 0.0) == 0.0  # the first item: no rate known yet
    assert gather_delay(0.0, 0.001, 0.0) == 0.0  # the alert writer: never waits


def test_the_arrival_rate_follows_the_recent_gaps():
    gap = smoothed_gap(None, 1.0)
    assert gap == 1.0
    for _ in range(20):  # a burst at 10 ms after a slow start
        gap = smoothed_gap(gap, 0.01)
    assert gather_delay(0.2, gap, 0.0) > 0
    for _ in range(20):  # and slow again
        gap = smoothed_gap(gap, 1.0)
    assert gather_delay(0.2, gap, 0.0) == 0.0


def test_the_commit_runs_in_the_committers_own_thread():
    seen: list[str] = []
    committer = GroupCommitter(lambda items: [seen.append(threading.current_thread().name)] * len(items),
                               "named-committer")
    committer.submit(1).result(timeout=10)
    assert seen == ["named-committer"]
