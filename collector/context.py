"""Opening a collector's configuration and database for one CLI command."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from collector import audit
from collector.config import CollectorConfig, load_config
from collector.errors import CollectorError
from collector.protect import keys as content_keys
from collector.store.db import is_initialised, make_engine


@contextmanager
def open_store(args: argparse.Namespace) -> Iterator[tuple[CollectorConfig, Engine]]:
    cfg = load_config(args.data, getattr(args, "db", None))
    engine = make_engine(cfg.db_url)
    try:
        try:
            ready = is_initialised(engine)
        except OperationalError as exc:
            raise CollectorError(f"cannot open the database: {str(exc.orig).strip().splitlines()[0]}") from exc
        if not ready:
            raise CollectorError("the database has no WardWatch schema; run 'init' (or check --db)")
        audit.use_data_dir(cfg.data_dir)  # every command that writes may have to append to the audit log
        content_keys.use_data_dir(cfg.data_dir, engine)  # alert content is sealed under keys outside the database
        yield cfg, engine
    finally:
        engine.dispose()
