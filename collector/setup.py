"""`wardwatch-collector init`: data directory, CA and keys, configuration, database."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sqlalchemy import select

from collector.config import default_db_url, load_config, write_config
from collector.errors import CollectorError
from collector.pki import PkiPaths, create_pki
from collector.protect import keys as content_keys
from collector.store.db import make_engine, migrate, session_factory
from collector.store.models import Site


def initialise(data_dir: Path, db_url: str | None, site: str, sans: list[str]) -> Path:
    """Create everything a collector needs. Refuses to touch an existing CA, so a re-run cannot orphan agents."""
    pki = PkiPaths(data_dir / "pki")
    if pki.ca_key.exists():
        raise CollectorError(f"{data_dir} is already initialised (its CA exists); refusing to replace it")
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    create_pki(pki, sans)
    write_config(data_dir, db_url)
    content_keys.use_data_dir(data_dir)  # makes <data>/keys/content.key (0600) unless WARDWATCH_CONTENT_KEY is set
    engine = make_engine(db_url or default_db_url(data_dir))
    try:
        migrate(engine)
        with session_factory(engine).begin() as session:
            if session.scalar(select(Site).where(Site.name == site)) is None:
                session.add(Site(name=site))
    finally:
        engine.dispose()
    return data_dir


def cmd_init(args: argparse.Namespace) -> int:
    initialise(args.data, args.db, args.site, args.san)
    cfg = load_config(args.data, args.db)
    print(f"Initialised WardWatch collector in {args.data}")
    print(f"  database: {cfg.db_url.split('@')[-1] if '@' in cfg.db_url else cfg.db_url}")
    print(f"  CA certificate: {PkiPaths(args.data / 'pki').ca_cert}")
    print("Next: wardwatch-collector serve, then wardwatch-collector token create --site NAME")
    return 0
