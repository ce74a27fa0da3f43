"""The data-protection commands as an operator runs them: real `wardwatch-collector` processes on a real store."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy.orm import Session

from collector import audit
from collector.config import load_config
from collector.demo_review import add_signed_alert, ensure_demo_agent
from collector.protect import keys
from collector.protect.rows import count_under_other_keys
from collector.setup import initialise
from collector.store.db import make_engine
from collector.store.models import Site
from tests.harness import COLLECTOR, run
from tests.protect.conftest import raw_database_bytes

TEXT = "velvet-otter-signal-5150"


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != keys.ENV_VAR}
    return env | extra


def _cli(data, *args, check=True, **env):
    return run([COLLECTOR, "--data", str(data), *args], check=check, env=_env(**env))


@pytest.fixture
def collector_dir(db_url, ring, tmp_path):
    """An initialised collector (its own content key file) holding two signed alerts."""
    data = tmp_path / "collector"
    initialise(data, None if db_url.startswith("sqlite") else db_url, "Invented High", [])
    cfg = load_config(data)
    engine = make_engine(cfg.db_url)
    key = ed25519.Ed25519PrivateKey.generate()
    audit.use_data_dir(data)
    with audit.write_session(engine) as s:
        agent = ensure_demo_agent(s, s.query(Site).one(), key, hostname="PC-ART-02")
        for n in range(2):
            add_signed_alert(s, agent, key, user="pupil.vale", category="bullying", severity=3,
                             matched=f"{TEXT}-{n}", context=f"they keep saying {TEXT}", rule="bullying/t",
                             created_at=dt.datetime.now(dt.UTC))
    yield data, engine
    engine.dispose()


def test_init_makes_a_private_key_file(collector_dir):
    data, _engine = collector_dir
    path = keys.key_file(data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(json.loads(path.read_text())["keys"]) == 1


def test_cli_reads_content_and_a_wrong_key_is_one_clear_line(collector_dir):
    data, _engine = collector_dir
    listed = [json.loads(line) for line in _cli(data, "alerts", "list", "--json").stdout.splitlines()]
    assert sorted(a["matched"] for a in listed) == [f"{TEXT}-0", f"{TEXT}-1"]
    assert "0 failed" in _cli(data, "alerts", "verify").stdout

    wrong = base64.b64encode(secrets.token_bytes(32)).decode()
    failed = _cli(data, "alerts", "list", "--json", check=False, **{keys.ENV_VAR: wrong})
    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr and len(failed.stderr.strip().splitlines()) == 1
    assert "does not hold" in failed.stderr and TEXT not in failed.stderr + failed.stdout


def test_rotation_reencrypts_everything_under_a_new_key(collector_dir, tmp_path):
    data, engine = collector_dir
    old = keys.load_keyring(data)
    out = _cli(data, "keys", "rotate-content").stdout
    new = keys.load_keyring(data)
    assert new.current != old.current and set(old.keys) < set(new.keys)
    assert f"new content key {new.current.hex()} is current" in out
    # 2 alerts x (matched, context, payload) sealed values, all now under the new key.
    assert "6 stored value(s) re-encrypted" in out
    keys.use_keyring(new)
    with engine.connect() as conn:
        assert count_under_other_keys(conn, new) == 0
        assert count_under_other_keys(conn, keys.KeyRing(old.keys, old.current)) == 6
    assert TEXT.encode() not in raw_database_bytes(engine, tmp_path)
    assert "0 failed" in _cli(data, "alerts", "verify").stdout
    assert _cli(data, "audit", "verify").returncode == 0
    assert "0 stored value(s)" in _cli(data, "keys", "rotate-content", "--reseal-only").stdout
    # Only the old key, as a stale copy of the key file would hold: the new ciphertexts are out of its reach.
    stale = base64.b64encode(old.keys[old.current]).decode()
    assert _cli(data, "alerts", "list", check=False, **{keys.ENV_VAR: stale}).returncode == 2


def test_rotation_with_the_key_in_the_environment_explains_itself(collector_dir):
    data, _engine = collector_dir
    key = base64.b64encode(keys.load_keyring(data).current_key()[1]).decode()
    failed = _cli(data, "keys", "rotate-content", check=False, **{keys.ENV_VAR: key})
    assert failed.returncode == 2 and "NEW,OLD" in failed.stderr and "Traceback" not in failed.stderr


def test_retention_and_export_commands(collector_dir, tmp_path):
    data, engine = collector_dir
    dry = json.loads(_cli(data, "retention", "run", "--dry-run", "--json").stdout)
    assert dry == {"dry_run": True, "due": {}, "deleted": 0, "alert_ids": {}}
    assert "deleted 0 alert(s)" in _cli(data, "retention", "run").stdout

    out = _cli(data, "export", "subject", "pupil.vale", "--out", str(tmp_path / "sar")).stdout
    assert "2 alert(s) and 0 console account(s)" in out
    assert _cli(data, "export", "concerns", "--since", "2026-09-01", "--out", str(tmp_path / "c.csv")).returncode == 0
    bad = _cli(data, "export", "concerns", "--since", "last tuesday", "--out", str(tmp_path / "c.csv"), check=False)
    assert bad.returncode == 2 and "--since must be a date" in bad.stderr

    config = data / "config.toml"
    config.write_text(config.read_text() + "\n[retention]\nfalse_positive_days = -1\n")
    bad = _cli(data, "retention", "run", check=False)
    assert bad.returncode == 2 and "false_positive_days" in bad.stderr and "Traceback" not in bad.stderr
    with Session(engine) as s:
        actions = {e.action for e in audit.entries_for(s, "retention")}
    assert actions == {"retention.run"}


def test_a_replica_without_the_key_file_refuses_instead_of_making_a_new_key(collector_dir):
    data, _engine = collector_dir
    path = keys.key_file(data)
    path.rename(path.with_name("content.key.elsewhere"))
    failed = _cli(data, "alerts", "list", check=False)
    assert failed.returncode == 2 and "copy keys/content.key" in failed.stderr
    assert not path.exists()
