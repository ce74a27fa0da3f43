"""Group commit: one thread per collector process handles every item waiting at that moment in one transaction,
and resolves each item's future only after the commit returned.

Per call, a transaction costs more than the work in it: a pool checkout, BEGIN, the statements and COMMIT, each a
round trip with the GIL handed to the thread and back, and a thread hop from the event loop and back. 10,000
agents make hundreds of calls a second; grouped, they share those costs. A failed transaction fails every item
in it (the gateway refuses each as retryable, and nothing is acknowledged).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


def _settle(future: concurrent.futures.Future, result: Any = None, exception: BaseException | None = None) -> None:
    """Resolve one item's future. A caller that hung up cancelled it meanwhile: its work is committed all the
    same (its retry is answered from what was stored), and the rest of the group must still be answered."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


def smoothed_gap(mean_gap: float | None, gap: float) -> float:
    """The running mean of the time between submissions after one more `gap` (None: no gap seen yet)."""
    return gap if mean_gap is None else 0.8 * mean_gap + 0.2 * gap


def gather_delay(gather_s: float, mean_gap: float | None, oldest_age: float) -> float:
    """How much longer the oldest waiting item should wait for company, in seconds (0: commit now). Items wait
    only while they arrive more often than twice per `gather_s`, and never beyond `gather_s` from the oldest's
    arrival: a steady trickle forms groups, a slow one commits each item at once."""
    if not gather_s or mean_gap is None or mean_gap >= gather_s / 2:
        return 0.0
    return max(0.0, gather_s - oldest_age)


class GroupCommitter(Generic[Item]):
    """`commit(items)` runs in this committer's thread and returns one result per item, in order, or raises.

    `take(pending)` says how many of the waiting items (oldest first) go into the next group; by default all.

    With `gather_s`, a busy committer lets its oldest item wait for company (`gather_delay`), so that a steady
    trickle (heartbeats arrive evenly, ~80 a second per worker) forms groups instead of one transaction each; at
    a school's rate, each commits at once.
    """

    def __init__(self, commit: Callable[[list[Item]], Sequence[Any]], name: str, *,
                 take: Callable[[list[Item]], int] | None = None, gather_s: float = 0.0) -> None:
        self._commit = commit
        self._take = take or len
        self._name = name
        self._gather_s = gather_s
        self._pending: list[tuple[Item, concurrent.futures.Future, float]] = []
        self._mean_gap: float | None = None  # seconds between submissions, smoothed
        self._last_submit: float | None = None
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, item: Item) -> concurrent.futures.Future:
        """Commit `item` with whatever else is waiting; the future gives its result once that is committed."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        now = time.monotonic()
        with self._wake:
            if self._last_submit is not None:
                self._mean_gap = smoothed_gap(self._mean_gap, now - self._last_submit)
            self._last_submit = now
            self._pending.append((item, future, now))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._wake.notify()
        return future

    def holding(self) -> threading.Condition:
        """Hold this (`with committer.holding(): ...`) to submit several items that must form one group: the
        thread cannot take a group while it is held."""
        return self._wake

    def _next_group(self) -> list[tuple[Item, concurrent.futures.Future, float]]:
        with self._wake:
            while True:
                while not self._pending:
                    self._wake.wait()
                delay = gather_delay(self._gather_s, self._mean_gap, time.monotonic() - self._pending[0][2])
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                count = max(1, self._take([item for item, _, _ in self._pending]))
                group, self._pending = self._pending[:count], self._pending[count:]
                return group

    def _run(self) -> None:
        while True:
            group = self._next_group()
            try:
                results = self._commit([item for item, _, _ in group])
            except BaseException as exc:  # handed to every waiting caller: none may wait forever
                for _, future, _ in group:
                    _settle(future, exception=exc)
                continue
            for (_, future, _), result in zip(group, results, strict=True):
                _settle(future, result=result)
