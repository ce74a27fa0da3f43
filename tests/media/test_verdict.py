"""Merging the header finding with what the OS says: who wins, and when a volume counts as unlocked."""

from __future__ import annotations

from agent.capture.media.header import HeaderFinding
from agent.capture.media.report import (
    ENCRYPTED_LOCKED,
    ENCRYPTED_UNLOCKED,
    NOT_ENCRYPTED,
    UNKNOWN_HIGH_ENTROPY,
    VERACRYPT_LIKE,
)
from agent.capture.media.verdict import OsFacts, combine

LUKS = HeaderFinding(ENCRYPTED_LOCKED, "luks2", "crypto_LUKS", ("LUKS2 header at 0",))
RANDOM = HeaderFinding(UNKNOWN_HIGH_ENTROPY, VERACRYPT_LIKE, None, ("entropy",))
PLAIN_FAT = HeaderFinding(NOT_ENCRYPTED, "none", "vfat", ("vfat superblock",))
APFS = HeaderFinding(UNKNOWN_HIGH_ENTROPY, "none", "apfs", ("APFS container",))


def test_open_mapping_makes_an_encrypted_volume_unlocked():
    report = combine("/dev/sdb1", LUKS, OsFacts(unlocked=True, evidence=["dm-crypt mapping open: stick"]), 1024)
    assert (report.state, report.scheme) == (ENCRYPTED_UNLOCKED, "luks2")
    assert report.evidence == ["LUKS2 header at 0", "dm-crypt mapping open: stick"]


def test_unlocked_flag_never_makes_a_plain_volume_encrypted():
    assert combine("x", PLAIN_FAT, OsFacts(unlocked=True), 1).state == NOT_ENCRYPTED


def test_windows_reading_through_bitlocker_sees_plain_fat_but_the_os_knows():
    facts = OsFacts(encrypted=True, unlocked=True, scheme="bitlocker")
    report = combine(r"\\.\E:", PLAIN_FAT, facts, None)
    assert (report.state, report.scheme, report.filesystem) == (ENCRYPTED_UNLOCKED, "bitlocker", "vfat")


def test_diskutil_decides_apfs_either_way():
    assert combine("/dev/disk4s1", APFS, OsFacts(encrypted=False), 1).state == NOT_ENCRYPTED
    locked = combine("/dev/disk4s1", APFS, OsFacts(encrypted=True, unlocked=False, scheme="apfs-encrypted"), 1)
    assert (locked.state, locked.scheme) == (ENCRYPTED_LOCKED, "apfs-encrypted")


def test_os_saying_not_encrypted_does_not_clear_a_veracrypt_suspicion():
    # BitLocker "off" on Windows says nothing about VeraCrypt, which the OS cannot see.
    assert combine("x", RANDOM, OsFacts(encrypted=False), 1).state == UNKNOWN_HIGH_ENTROPY


def test_blkid_filesystem_clears_high_entropy_but_not_encryption_types():
    assert combine("x", RANDOM, OsFacts(filesystem="jfs"), 1).state == NOT_ENCRYPTED
    assert combine("x", RANDOM, OsFacts(filesystem="crypto_LUKS"), 1).state == UNKNOWN_HIGH_ENTROPY


def test_measured_size_wins_over_the_os_figure_and_details_are_kept():
    facts = OsFacts(size_bytes=99, vendor="Acme", model="Stick", serial="AC0001", device="sdb1")
    report = combine("/dev/sdb1", PLAIN_FAT, facts, 1000)
    assert report.size_bytes == 1000
    assert report.to_dict()["serial"] == "AC0001" and report.to_dict()["device"] == "sdb1"
    assert combine("x", PLAIN_FAT, OsFacts(size_bytes=99), None).size_bytes == 99
    assert "why" not in report.to_dict() and "vendor" not in combine("x", PLAIN_FAT, OsFacts(), 1).to_dict()
