"""The pure header classifier on bytes: entropy, signatures, partition tables, the verdict for odd inputs."""

from __future__ import annotations

import os
import struct

from agent.capture.media import header
from agent.capture.media.header import HeaderFinding, Partition, PartitionTable
from agent.capture.media.report import (
    BITLOCKER,
    ENCRYPTED_LOCKED,
    LUKS1,
    NOT_ENCRYPTED,
    UNKNOWN_HIGH_ENTROPY,
    VERACRYPT_LIKE,
)


def test_entropy_of_random_bytes_is_close_to_eight_and_of_text_is_low():
    assert header.entropy_bits_per_byte(os.urandom(65536)) > 7.99
    assert header.entropy_bits_per_byte(b"school trip consent form " * 2000) < 4.5
    assert header.entropy_bits_per_byte(b"") == 0.0
    assert header.entropy_bits_per_byte(bytes(range(256)) * 4) == 8.0


def test_random_header_is_unknown_high_entropy_never_encrypted():
    found = header.classify_header(os.urandom(header.HEAD_BYTES), 16 << 20, {})
    assert (found.state, found.scheme, found.filesystem) == (UNKNOWN_HIGH_ENTROPY, VERACRYPT_LIKE, None)
    assert "possibly encrypted" in found.evidence


def test_empty_blank_and_tiny_inputs_are_not_encrypted():
    assert header.classify_header(b"", 0, {}).state == NOT_ENCRYPTED
    blank = header.classify_header(bytes(header.HEAD_BYTES), 1 << 20, {})
    assert blank.state == NOT_ENCRYPTED and "blank" in blank.evidence[0]
    # Random but tiny: far too small for any encrypted volume, and too short for entropy to mean anything.
    tiny = header.classify_header(os.urandom(200), 200, {})
    assert tiny.state == NOT_ENCRYPTED and "too small" in tiny.evidence[0]


def test_luks1_magic_with_an_unknown_version_is_not_luks():
    head = b"LUKS\xba\xbe" + struct.pack(">H", 7) + os.urandom(header.HEAD_BYTES - 8)
    found = header.classify_header(head, 1 << 20, {})
    assert found.scheme == VERACRYPT_LIKE  # random after a bogus magic: a suspicion, not LUKS


def test_luks1_header_shorter_than_its_payload_offset_is_flagged_truncated():
    head = bytearray(4096)
    head[:8] = b"LUKS\xba\xbe\x00\x01"
    head[8:11], head[40:51] = b"aes", b"xts-plain64"
    struct.pack_into(">I", head, 104, 4096)  # data starts at sector 4096 = 2 MiB
    found = header.classify_header(bytes(head), 4096, {})
    assert (found.state, found.scheme) == (ENCRYPTED_LOCKED, LUKS1)
    assert any("truncated" in e for e in found.evidence)
    assert "cipher aes-xts-plain64" in found.evidence[0]


def _bitlocker_to_go_head() -> bytes:
    head = bytearray(4096)
    head[:11] = b"\xeb\x58\x90MSWIN4.1"
    head[424:440] = header.BITLOCKER_GUID
    struct.pack_into("<3Q", head, 440, 0x100000, 0x200000, 0x300000)
    head[510:512] = b"\x55\xaa"
    return bytes(head)


def test_bitlocker_needs_its_fve_metadata_to_be_called_encrypted():
    head = _bitlocker_to_go_head()
    assert header.extra_reads(head) == [(0x100000, 12), (0x200000, 12), (0x300000, 12)]
    fve = b"-FVE-FS-" + struct.pack("<HH", 0x40, 2)
    confirmed = header.classify_header(head, 4 << 20, {0x200000: fve})
    assert (confirmed.state, confirmed.scheme) == (ENCRYPTED_LOCKED, "bitlocker-to-go")
    assert "FVE metadata confirmed at 1/3 offsets" in confirmed.evidence
    damaged = header.classify_header(head, 4 << 20, {0x100000: b"-FVE-FS-" + struct.pack("<HH", 0x40, 9)})
    assert damaged.state == UNKNOWN_HIGH_ENTROPY and damaged.scheme == "bitlocker-to-go"


def test_fat_boot_sector_with_mswin_oem_but_no_guid_is_plain_fat():
    head = bytearray(_bitlocker_to_go_head())
    head[424:440] = bytes(16)
    head[82:90] = b"FAT32   "
    found = header.classify_header(bytes(head), 4 << 20, {})
    assert (found.state, found.filesystem) == (NOT_ENCRYPTED, "vfat")


def test_vista_bitlocker_metadata_location_is_a_cluster_number():
    head = bytearray(4096)
    head[:11] = b"\xeb\x52\x90-FVE-FS-"
    struct.pack_into("<H", head, 11, 512)
    head[13] = 8  # sectors per cluster: 4 KiB clusters
    struct.pack_into("<Q", head, 56, 100)
    assert header.extra_reads(bytes(head)) == [(100 * 4096, 12)]
    found = header.classify_header(bytes(head), 1 << 20, {409600: b"-FVE-FS-" + struct.pack("<HH", 0x40, 1)})
    assert (found.state, found.scheme) == (ENCRYPTED_LOCKED, BITLOCKER)


def test_boot_code_is_not_mistaken_for_a_partition_table():
    head = bytearray(os.urandom(512))
    head[510:512] = b"\x55\xaa"
    head[446] = 0x33  # not a valid status byte
    assert header.find_partitions(bytes(head), 1 << 20) is None


def test_one_plain_partition_makes_the_whole_disk_not_encrypted():
    table = PartitionTable("dos", ())
    locked = HeaderFinding(ENCRYPTED_LOCKED, LUKS1, "crypto_LUKS")
    plain = HeaderFinding(NOT_ENCRYPTED, "none", "vfat")
    both = header.combine_partitions(table, [(Partition(1 << 20, 1 << 20, "p1"), locked),
                                             (Partition(2 << 20, 1 << 20, "p2"), plain)])
    assert both.state == NOT_ENCRYPTED and both.filesystem == "crypto_LUKS,vfat"
    only_locked = header.combine_partitions(table, [(Partition(1 << 20, 1 << 20, "p1"), locked)])
    assert (only_locked.state, only_locked.scheme) == (ENCRYPTED_LOCKED, LUKS1)
    assert header.combine_partitions(table, []).state == NOT_ENCRYPTED
