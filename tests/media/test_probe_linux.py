"""The Linux probe on a real loop device: kernel name, size, backing file, removable-media eligibility."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.capture.media import classify_path
from agent.capture.media import probe_linux as sysfs
from tests.media.conftest import KEY, MiB, attached, make_luks

pytestmark = pytest.mark.media


def test_loop_device_is_classified_with_its_kernel_details(tmp_path):
    image = make_luks(tmp_path / "luks.img", "luks2")
    with attached(image) as device:
        name = Path(device).name
        report = classify_path(device)
        assert (report.state, report.scheme, report.device) == ("encrypted-locked", "luks2", name)
        assert report.size_bytes == 24 * MiB
        assert f"loop device backed by {image}" in report.evidence
        # The image itself is attached but no dm-crypt mapping is open over it: still locked.
        by_file = classify_path(str(image))
        assert by_file.state == "encrypted-locked"
        assert f"attached as {device}" in by_file.evidence
        assert sysfs.loops_backed_by(str(image)) == [name]
        assert sysfs.disk_of(name) == name and sysfs.size_bytes(name) == 24 * MiB
        assert sysfs.is_removable_media(name, include_loop=True)
        assert not sysfs.is_removable_media(name, include_loop=False)
    assert sysfs.loops_backed_by(str(image)) == []


def _device_mapper_reason() -> str | None:
    if shutil.which("cryptsetup") is None:
        return "cryptsetup is not installed"
    if not Path("/dev/mapper/control").exists():
        return "no device-mapper here (/dev/mapper/control missing: dm_mod not loaded or not exposed to this container)"
    return None


def test_image_with_an_open_dm_crypt_mapping_is_unlocked(tmp_path):
    reason = _device_mapper_reason()
    if reason:
        pytest.skip(reason)
    image = make_luks(tmp_path / "luks.img", "luks2")
    key = tmp_path / "luks.key"
    key.write_bytes(KEY)
    name = f"ww-test-{tmp_path.name[-12:]}"
    opened = subprocess.run(["cryptsetup", "open", "--key-file", str(key), str(image), name],
                            capture_output=True, text=True, timeout=60)
    if opened.returncode != 0:
        pytest.skip(f"cryptsetup open failed here: {opened.stderr.strip().splitlines()[0]}")
    try:
        report = classify_path(str(image))
        assert report.state == "encrypted-unlocked"
        assert f"dm-crypt mapping open: {name}" in report.evidence
    finally:
        subprocess.run(["cryptsetup", "close", name], capture_output=True, timeout=60)
    assert classify_path(str(image)).state == "encrypted-locked"
