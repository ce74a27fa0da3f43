"""`user` and `audit` commands through the real CLI on an initialised data directory."""

import json
import sqlite3

from tests.harness import COLLECTOR, run


def cli(data, *args, check=True):
    return run([COLLECTOR, "--data", str(data), *args], check=check)


def test_user_and_audit_commands(tmp_path):
    data = tmp_path / "collector"
    cli(data, "init", "--site", "Northfield")
    out = cli(data, "user", "add", "ada", "--role", "dsl", "--site", "Northfield", "--name", "Ada F",
              "--email", "ada@school.invalid").stdout
    assert "/setup/" in out and out.strip().splitlines()[-1].strip().startswith("https://")
    bad = cli(data, "user", "add", "bob", "--role", "dsl", "--site", "Nowhere", check=False)
    assert bad.returncode == 2 and "no site named 'Nowhere'" in bad.stderr and "Traceback" not in bad.stderr
    users = [json.loads(line) for line in cli(data, "user", "list", "--json").stdout.splitlines()]
    assert [(u["username"], u["role"], u["state"], u["sites"]) for u in users] == [
        ("ada", "dsl", "setup pending", ["Northfield"])]
    cli(data, "user", "disable", "ada")
    assert json.loads(cli(data, "user", "list", "--json").stdout)["state"] == "disabled"
    assert "/setup/" in cli(data, "user", "reset", "ada").stdout
    missing = cli(data, "user", "disable", "nobody", check=False)
    assert missing.returncode == 2 and "no account named" in missing.stderr

    assert "audit log intact" in cli(data, "audit", "verify").stdout
    actions = [json.loads(line)["action"] for line in cli(data, "audit", "list", "--json").stdout.splitlines()]
    assert actions == ["user.add", "user.disable", "user.reset"]

    with sqlite3.connect(data / "wardwatch.db") as db:
        db.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 2")
    broken = cli(data, "audit", "verify", check=False)
    assert broken.returncode == 1 and "entry 2" in broken.stdout
