import json

import pytest

from collector.cli import main
from tests.reports.seed import seed_store

# Rendering does not depend on the database: tests marked with this run on SQLite only. Figures and the weekly
# schedule's claim (which relies on the database's locking) run on both backends.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def seeded(store_engine, db_url, tmp_path):
    return seed_store(store_engine, tmp_path / "data", db_url)


@pytest.fixture
def cli(seeded, capsys):
    """Run a `wardwatch-collector` command in this process against the seeded store: (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--data", str(seeded.data_dir), "--db", seeded.db_url, *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
