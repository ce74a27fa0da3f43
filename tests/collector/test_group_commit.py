"""The group committer: one transaction for what is waiting, each caller answered with its own result."""

import threading
import time

import pytest

from collector.store.group_commit import GroupCommitter


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


def _trickle(committer: GroupCommitter, count: int, every_s: float) -> list:
    """Submit `count` items one at a time, `every_s` apart, as callers arriving at a steady rate would."""
    futures = []
    for n in range(count):
        futures.append(committer.submit(n))
        time.sleep(every_s)
    return [f.result(timeout=10) for f in futures]


def test_a_steady_trickle_is_gathered_into_few_transactions():
    commit = Recorder()
    committer = GroupCommitter(commit, "test-committer", gather_s=0.4)
    assert _trickle(committer, 40, 0.01) == [2 * n for n in range(40)]
    # Without gathering, each item would find the thread idle and commit alone: 40 transactions.
    assert len(commit.groups) <= 10
    assert sorted(n for group in commit.groups for n in group) == list(range(40))


def test_items_arriving_slowly_are_committed_at_once_not_held_back():
    commit = Recorder()
    committer = GroupCommitter(commit, "test-committer", gather_s=0.4)
    # 0.3 s apart is slower than two per gather window: had the committer waited 0.4 s for company, each pair of
    # neighbours would have shared a transaction.
    _trickle(committer, 5, 0.3)
    assert [len(group) for group in commit.groups] == [1, 1, 1, 1, 1]


def test_the_commit_runs_in_the_committers_own_thread():
    seen: list[str] = []
    committer = GroupCommitter(lambda items: [seen.append(threading.current_thread().name)] * len(items),
                               "named-committer")
    committer.submit(1).result(timeout=10)
    assert seen == ["named-committer"]
