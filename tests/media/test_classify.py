"""classify_path on real images made with cryptsetup, mkfs, tcplay and byte-exact BitLocker headers."""

from __future__ import annotations

import os

import pytest

from agent.capture.media import classify_path
from agent.capture.media.report import ENCRYPTED_LOCKED, NO_ACCESS, NOT_ENCRYPTED, UNKNOWN_HIGH_ENTROPY
from tests.media.conftest import (
    MiB,
    attached,
    blank,
    make_bitlocker,
    make_fs,
    make_luks,
    need_tools,
    partitioned_image,
    random_image,
    run,
    tcplay_create,
)

pytestmark = pytest.mark.media


@pytest.mark.parametrize("luks_type", ["luks1", "luks2"])
def test_luks_images_are_encrypted_and_locked(tmp_path, luks_type):
    image = make_luks(tmp_path / f"{luks_type}.img", luks_type)
    report = classify_path(str(image))
    assert (report.state, report.scheme, report.filesystem) == (ENCRYPTED_LOCKED, luks_type, "crypto_LUKS")
    assert report.size_bytes == 24 * MiB
    assert f"blkid: TYPE=crypto_LUKS VERSION={luks_type[-1]}" in report.evidence
    if luks_type == "luks2":
        assert "secondary header at 16384" in report.evidence


@pytest.mark.parametrize("fs", ["vfat", "exfat", "ntfs", "ext4"])
def test_plain_filesystems_are_not_encrypted(tmp_path, fs):
    report = classify_path(str(make_fs(tmp_path / f"{fs}.img", fs)))
    assert (report.state, report.scheme, report.filesystem) == (NOT_ENCRYPTED, "none", fs)
    assert f"{fs} superblock" in report.evidence


@pytest.mark.parametrize(("to_go", "scheme"), [(False, "bitlocker"), (True, "bitlocker-to-go")])
def test_bitlocker_headers_are_encrypted_in_both_layouts(tmp_path, to_go, scheme):
    need_tools("blkid")
    image = make_bitlocker(tmp_path / "bl.img", to_go=to_go)
    # The fixture must be BitLocker to an independent reader, or the test proves nothing.
    assert run("blkid", "-p", "-o", "value", "-s", "TYPE", image).strip() == "BitLocker"
    report = classify_path(str(image))
    assert (report.state, report.scheme) == (ENCRYPTED_LOCKED, scheme)
    assert "FVE metadata confirmed at 3/3 offsets" in report.evidence


def test_bitlocker_boot_sector_without_metadata_is_not_trusted(tmp_path):
    """Without FVE metadata the GUID proves nothing: blkid reads the FAT underneath, and so can anyone."""
    need_tools("blkid")
    report = classify_path(str(make_bitlocker(tmp_path / "bl.img", to_go=True, fve_blocks=False)))
    assert (report.state, report.scheme, report.filesystem) == (NOT_ENCRYPTED, "none", "vfat")
    assert any("no FVE metadata block" in e for e in report.evidence)
    assert "blkid: TYPE=vfat VERSION=FAT32" in report.evidence


def test_random_data_is_only_possibly_encrypted(tmp_path):
    report = classify_path(str(random_image(tmp_path / "random.img")))
    assert (report.state, report.scheme, report.filesystem) == (UNKNOWN_HIGH_ENTROPY, "veracrypt-like", None)


def test_truecrypt_volume_made_by_tcplay_is_veracrypt_like(tmp_path):
    need_tools("tcplay")
    image = blank(tmp_path / "tc.img", 4 * MiB)
    with attached(image) as device:
        tcplay_create(device)
    report = classify_path(str(image))
    assert (report.state, report.scheme) == (UNKNOWN_HIGH_ENTROPY, "veracrypt-like")


def test_empty_file_is_not_called_encrypted(tmp_path):
    empty = tmp_path / "empty.img"
    empty.touch()
    report = classify_path(str(empty))
    assert (report.state, report.size_bytes, report.evidence[0]) == (NOT_ENCRYPTED, 0, "empty: holds no data")


def test_truncated_images(tmp_path):
    luks = make_luks(tmp_path / "luks1.img", "luks1")
    cut = tmp_path / "luks-cut.img"
    cut.write_bytes(luks.read_bytes()[:8192])
    report = classify_path(str(cut))
    assert (report.state, report.scheme) == (ENCRYPTED_LOCKED, "luks1")
    assert any(e.startswith("truncated") for e in report.evidence)
    fat = make_fs(tmp_path / "fat.img", "vfat")
    stub = tmp_path / "fat-cut.img"
    stub.write_bytes(fat.read_bytes()[:300])  # cut before the boot signature
    assert classify_path(str(stub)).state == NOT_ENCRYPTED


def test_unreadable_paths_are_no_access_with_a_reason(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it would block: it must be refused from stat alone
    dangling = tmp_path / "dangling.img"
    dangling.symlink_to(tmp_path / "gone.img")
    cases = {
        str(tmp_path / "missing.img"): "does not exist",
        str(tmp_path): "is a directory, not a block device or image file",
        str(fifo): "is a FIFO, not a block device or image file",
        str(dangling): f"dangling symbolic link to {tmp_path / 'gone.img'}",
    }
    for path, why in cases.items():
        report = classify_path(path)
        assert (report.state, report.why) == (NO_ACCESS, why), path


@pytest.mark.parametrize("table", ["dos", "gpt"])
def test_partitioned_stick_is_judged_by_its_least_protected_partition(tmp_path, table):
    luks = make_luks(tmp_path / "p-luks.img", "luks2")
    fat = make_fs(tmp_path / "p-fat.img", "vfat", 34 * MiB)
    mixed = classify_path(str(partitioned_image(tmp_path, [luks, fat], table)))
    assert mixed.state == NOT_ENCRYPTED
    assert f"{table} partition table with 2 partition(s)" in mixed.evidence
    assert mixed.filesystem == "crypto_LUKS,vfat"
    only_luks = classify_path(str(partitioned_image(tmp_path, [luks], table)))
    assert (only_luks.state, only_luks.scheme) == (ENCRYPTED_LOCKED, "luks2")
