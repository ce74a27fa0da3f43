import asyncio
import random

from agent.uplink import (
    STREAM_ESTABLISHED_S,
    Backoff,
    cancelled_by_closed_channel,
    command_backoff,
    stream_reopen_delay,
    upload_backoff,
)


def test_backoff_grows_to_its_cap_with_jitter_and_resets():
    b = Backoff(base=1, cap=8, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(10)]
    assert all(0 <= d <= 8 for d in delays)
    assert max(delays[4:]) > 1  # later attempts may wait longer than the first
    assert len(set(delays)) == len(delays)  # jittered: a room of PCs does not retry in lockstep
    b.reset()
    assert b.next_delay() <= 1


def test_an_established_stream_is_reopened_somewhere_in_the_spread_not_all_at_once():
    """5,000 agents losing one replica must come back spread over the heartbeat interval, not in a burst."""
    backoff = command_backoff()
    backoff.rng = random.Random(3)
    backoff.attempt = 6  # earlier failed attempts must not stretch the spread
    delays = [stream_reopen_delay(lasted_s=600, backoff=backoff, spread_s=60) for _ in range(5000)]
    assert all(0 <= d <= 60 for d in delays)
    per_10s = [sum(1 for d in delays if lo <= d < lo + 10) for lo in range(0, 60, 10)]
    assert min(per_10s) > 700, per_10s  # about 833 in each sixth of the window
    assert backoff.attempt == 0


def test_a_stream_that_failed_to_open_backs_off_exponentially():
    backoff = command_backoff()
    backoff.rng = random.Random(5)
    delays = [stream_reopen_delay(lasted_s=STREAM_ESTABLISHED_S - 0.01, backoff=backoff, spread_s=60)
              for _ in range(8)]
    assert backoff.attempt == 8  # each short-lived stream counted as a failed attempt, none as established
    ceilings = [2, 4, 8, 16, 32, 60, 60, 60]
    assert all(d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    assert max(delays[4:]) > 2  # later attempts wait longer than the first could


def test_an_upload_is_retried_within_a_quarter_second_first():
    delays = []
    for seed in range(200):
        b = upload_backoff()
        b.rng = random.Random(seed)
        delays.append(b.next_delay())
    assert max(delays) <= 0.25


def test_a_stream_the_agent_ended_itself_comes_back_at_once():
    backoff = Backoff(base=2.0, attempt=5, rng=random.Random(1))
    assert stream_reopen_delay(600.0, backoff, spread_s=60.0, replaced=True) == 0.0
    assert backoff.attempt == 0


def test_a_call_cut_off_by_a_closed_channel_is_told_apart_from_the_agent_stopping():
    async def main():
        seen = {}

        async def cut_off():  # what grpc.aio raises in a call whose channel was closed under it
            try:
                raise asyncio.CancelledError
            except asyncio.CancelledError:
                seen["cut off"] = cancelled_by_closed_channel()

        async def stopped():
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                seen["stopping"] = cancelled_by_closed_channel()
                raise

        await cut_off()
        task = asyncio.create_task(stopped())
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return seen

    assert asyncio.run(main()) == {"cut off": True, "stopping": False}
