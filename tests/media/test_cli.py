"""`wardwatch-agent check-media` as a technician runs it: JSON lines on stdout, one clear line on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.media.conftest import make_fs, make_luks

AGENT = str(Path(sys.executable).parent / "wardwatch-agent")
CONTRACT_KEYS = {"path", "state", "scheme", "filesystem", "size_bytes", "evidence"}

pytestmark = pytest.mark.media


def check_media(*paths: Path | str) -> subprocess.CompletedProcess:
    return subprocess.run([AGENT, "check-media", *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_every_path_gets_one_json_line_in_order_and_exit_zero(tmp_path):
    luks = make_luks(tmp_path / "luks.img", "luks1")
    fat = make_fs(tmp_path / "fat.img", "vfat")
    done = check_media(luks, fat)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(luks), str(fat)]
    assert all(r.keys() >= CONTRACT_KEYS for r in rows)
    assert [(r["state"], r["scheme"]) for r in rows] == [("encrypted-locked", "luks1"), ("not-encrypted", "none")]


def test_unreadable_path_still_gets_its_line_and_exit_two_with_one_clear_message(tmp_path):
    fat = make_fs(tmp_path / "fat.img", "vfat")
    missing = tmp_path / "missing.img"
    done = check_media(missing, fat, tmp_path)
    assert done.returncode == 2
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["state"] for r in rows] == ["no-access", "not-encrypted", "no-access"]
    assert rows[0]["why"] == "does not exist"
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"wardwatch-agent: cannot read 2 paths: {missing} (does not exist); "
        f"{tmp_path} (is a directory, not a block device or image file)"
    ]
