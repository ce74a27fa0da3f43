"""Where a collector keeps its things, and the few settings it reads from `<data>/config.toml`."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from collector.errors import CollectorError

CONFIG_NAME = "config.toml"
DEFAULT_LISTEN = "0.0.0.0:50051"
DEFAULT_WEB = "127.0.0.1:8080"


@dataclass(frozen=True)
class CollectorConfig:
    data_dir: Path
    db_url: str
    listen: str = DEFAULT_LISTEN
    enrol_listen: str = ""  # empty: the --listen host, port + 1
    web_listen: str = DEFAULT_WEB
    # What agents dial (enrolment strings carry it). Empty: what `serve` actually bound, from run/endpoints.json.
    public_address: str = ""
    public_enrol_address: str = ""
    public_web_url: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def endpoints_file(self) -> Path:
        return self.run_dir / "endpoints.json"

    def served_endpoints(self) -> dict:
        """Addresses the running `serve` bound (written at start-up), or {} if it has not run."""
        try:
            return json.loads(self.endpoints_file.read_text())
        except (OSError, ValueError):
            return {}


def default_db_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'wardwatch.db'}"


def load_config(data_dir: Path, db_override: str | None = None) -> CollectorConfig:
    """Read `<data>/config.toml`. Raises CollectorError if the directory was never initialised."""
    path = data_dir / CONFIG_NAME
    if not path.exists():
        raise CollectorError(f"{data_dir} is not an initialised collector data directory; run 'init' first")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CollectorError(f"{path}: {exc}") from exc
    section = raw.get("collector", {})
    known = {"db_url", "listen", "enrol_listen", "web_listen", "public_address", "public_enrol_address",
             "public_web_url"}
    return CollectorConfig(
        data_dir=data_dir,
        db_url=db_override or os.environ.get("WARDWATCH_DB") or section.get("db_url") or default_db_url(data_dir),
        listen=section.get("listen", DEFAULT_LISTEN),
        enrol_listen=section.get("enrol_listen", ""),
        web_listen=section.get("web_listen", DEFAULT_WEB),
        public_address=section.get("public_address", ""),
        public_enrol_address=section.get("public_enrol_address", ""),
        public_web_url=section.get("public_web_url", ""),
        extra={k: v for k, v in raw.items() if k != "collector"} | {
            k: v for k, v in section.items() if k not in known},
    )


def write_config(data_dir: Path, db_url: str | None) -> Path:
    """Write the initial config.toml. Only simple string values, so no TOML writer library is needed."""
    lines = [
        "# WardWatch collector configuration. Command-line options override these.",
        "[collector]",
        f'listen = "{DEFAULT_LISTEN}"',
        f'web_listen = "{DEFAULT_WEB}"',
        '# enrol_listen = "0.0.0.0:50052"        # default: the listen host, port + 1',
        '# public_address = "wardwatch.school.example:50051"   # what agents dial',
        '# public_enrol_address = "wardwatch.school.example:50052"',
    ]
    if db_url:
        lines.append(f"db_url = {json.dumps(db_url)}")
    else:
        lines.append('# db_url = "postgresql+psycopg://wardwatch@db.example/wardwatch"   # default: SQLite here')
    lines += [
        "",
        "# How long alerts are kept, by outcome (docs/dpia.md). `retention run --dry-run` shows what would go.",
        "# [retention]",
        "# false_positive_days = 30",
        "# no_further_action_days = 365",
        "# concern_years = 25          # after the last alert about that person",
        "# device_event_days = 365",
        "",
        "# School hours, for the silent-device alert to the technician.",
        "# [fleet]",
        "# silent_after_minutes = 60",
        '# school_hours = "08:00-16:30"',
        '# school_days = "mon-fri"',
        '# timezone = "Europe/London"',
    ]
    path = data_dir / CONFIG_NAME
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def split_hostport(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CollectorError(f"{what} must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)
