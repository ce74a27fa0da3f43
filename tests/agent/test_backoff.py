import random

from agent.uplink import Backoff


def test_backoff_grows_to_its_cap_with_jitter_and_resets():
    b = Backoff(base=1, cap=8, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(10)]
    assert all(0 <= d <= 8 for d in delays)
    assert max(delays[4:]) > 1  # later attempts may wait longer than the first
    assert len(set(delays)) == len(delays)  # jittered: a room of PCs does not retry in lockstep
    b.reset()
    assert b.next_delay() <= 1
