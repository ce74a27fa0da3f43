"""The daily retention task inside `serve`. Every replica runs it; the lock and the last-run time make one do it."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from sqlalchemy import Engine

from collector.config import CollectorConfig
from collector.protect.retention import run_retention
from collector.protect.retention_policy import RetentionPolicy

log = logging.getLogger("wardwatch.retention")

# How often a replica wakes to ask whether a run is due: short enough that a run is never much late after a
# restart, long enough to cost nothing.
CHECK_EVERY_S = 15 * 60
# The loop holds only weak references to tasks: keep ours alive here.
_tasks: set[asyncio.Task] = set()


async def retention_loop(engine: Engine, policy: RetentionPolicy, check_every_s: float = CHECK_EVERY_S) -> None:
    period = dt.timedelta(hours=policy.schedule_hours)
    while True:
        try:
            await asyncio.to_thread(run_retention, engine, policy, only_if_older_than=period)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Retention must never take the gateway down; the next check tries again. No content is in scope.
            log.exception("retention run failed; will try again")
        await asyncio.sleep(check_every_s)


def start_retention_schedule(cfg: CollectorConfig, engine: Engine) -> asyncio.Task | None:
    """Start the retention task on the running loop (None if `[retention] scheduled = false`)."""
    policy = RetentionPolicy.from_config(cfg.extra.get("retention", {}))
    if not policy.scheduled:
        return None
    task = asyncio.get_running_loop().create_task(retention_loop(engine, policy), name="wardwatch-retention")
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task
