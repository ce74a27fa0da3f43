"""The review half of `make demo`: invented staff and alerts whose signatures verify like real ones."""

from collector.config import load_config
from collector.demo_review import seed_review_demo
from collector.setup import initialise
from collector.store.db import make_engine
from tests.harness import COLLECTOR, run


def test_demo_seeds_staff_and_verifiable_alerts(tmp_path):
    data = tmp_path / "collector"
    initialise(data, None, "Demo school", [])
    cfg = load_config(data)
    engine = make_engine(cfg.db_url)
    try:
        lines = seed_review_demo(cfg, engine, "https://127.0.0.1:8443/")
        again = seed_review_demo(cfg, engine, "https://127.0.0.1:8443/")
    finally:
        engine.dispose()
    assert lines[0] == "Review console: https://127.0.0.1:8443/"
    assert sum("/setup/" in line for line in lines) == 3
    assert any("exist already" in line for line in again)
    verify = run([COLLECTOR, "--data", str(data), "alerts", "verify"])
    assert "5 alert(s) checked, 0 failed" in verify.stdout
    assert run([COLLECTOR, "--data", str(data), "audit", "verify"]).returncode == 0
    users = run([COLLECTOR, "--data", str(data), "user", "list"]).stdout
    assert all(name in users for name in ("demo.dsl", "demo.deputy", "demo.head"))
