"""A stick arrives while the service runs: exactly one `usb` alert with the right state reaches the collector."""

import json
import shutil
import subprocess

import pytest

from tests.harness import Agent, wait_for

pytestmark = pytest.mark.media


def _losetup(image) -> str:
    proc = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"losetup cannot attach images here: {proc.stderr.strip()}")
    return proc.stdout.strip()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("kind", "state", "severity"), [("fat", "not-encrypted", 3), ("luks2", "encrypted", 0)])
def test_stick_arrival_raises_one_usb_alert(tmp_path, collector, kind, state, severity):
    for tool in ("losetup", "mkfs.vfat", "cryptsetup"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    agent = Agent(tmp_path / "agent").enroll(collector.token())
    config = agent.config() | {"media_include_loop": True}
    (agent.state / "agent.json").write_text(json.dumps(config))
    image = tmp_path / "stick.img"
    image.write_bytes(b"\0" * (16 << 20))
    if kind == "fat":
        subprocess.run(["mkfs.vfat", str(image)], check=True, capture_output=True)
    else:
        (tmp_path / "key").write_text("correct horse")
        subprocess.run(["cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2",
                        "--pbkdf-force-iterations", "1000", "--key-file", str(tmp_path / "key"), str(image)],
                       check=True, capture_output=True)
    agent.start()
    wait_for(lambda: (agent.state / "status.json").exists(), 30, "the agent service to start")
    device = _losetup(image)
    try:
        def ours():
            return [a for a in collector.alerts()
                    if a["kind"] == "usb" and a["details"]["usb"]["device"] in (device, device.rsplit("/", 1)[-1])]

        [alert] = wait_for(ours, 60, f"a usb alert for {device}")
        usb = alert["details"]["usb"]
        assert usb["state"].startswith(state)
        assert alert["severity"] == severity
        if kind == "luks2":
            assert usb["scheme"] == "luks2"
        # Nothing more arrives for the same stick (one report per arrival, not per udev event).
        agent.stop()
        assert len(ours()) == 1
    finally:
        agent.stop()
        subprocess.run(["losetup", "-d", device], check=False)
