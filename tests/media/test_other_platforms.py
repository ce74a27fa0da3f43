"""The Windows and macOS parsers, fed the documented shapes of PowerShell's JSON and diskutil's plists.

The OS calls themselves run only on those systems; what can be checked here is that each answer is read right.
"""

from __future__ import annotations

import plistlib

import pytest

from agent.capture.media import probe_macos, probe_windows, watch_macos


@pytest.mark.parametrize(
    ("path", "letter"),
    [("E:", "E"), ("e:\\", "E"), ("\\\\.\\F:", "F"), ("\\\\?\\G:", "G"), ("/dev/sdb1", None), ("EF:", None)],
)
def test_drive_letters(path, letter):
    assert probe_windows.drive_letter(path) == letter


def test_locked_bitlocker_to_go_stick_on_a_usb_bus():
    facts = probe_windows.facts_from_windows(
        {"shell": 6, "protection": 2, "conversion": 1, "lock": 1, "bus": "USB", "model": "Acme Stick ",
         "serial": "AC0001", "disk": 2, "filesystem": None, "size": None}
    )
    assert (facts.encrypted, facts.unlocked, facts.scheme) == (True, False, "bitlocker")
    assert (facts.removable, facts.device) == (True, "PhysicalDrive2")
    assert (facts.model, facts.serial) == ("Acme Stick", "AC0001")
    assert "Explorer BitLocker protection: on, locked" in facts.evidence


def test_shell_property_alone_works_without_admin_rights():
    off = probe_windows.facts_from_windows({"shell": 2, "bus": "USB"})
    assert (off.encrypted, off.scheme) == (False, None)
    on = probe_windows.facts_from_windows({"shell": 1, "bus": "SATA"})
    assert (on.encrypted, on.unlocked, on.removable) == (True, True, False)


def test_wmi_fully_decrypted_and_unlocked_means_not_encrypted():
    facts = probe_windows.facts_from_windows({"shell": None, "protection": 0, "conversion": 0, "lock": 0})
    assert (facts.encrypted, facts.unlocked) == (False, True)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((1, None, None), "enabled"),
        ((1, 1, None), "enabled, also for drives from other organisations"),
        ((0, None, None), "disabled"),
        ((None, None, None), "not-configured"),
        ((1, None, 1), "overridden: 'Removable Disks: Deny write access' blocks writes to every removable disk"),
    ],
)
def test_write_policy_description(values, expected):
    assert probe_windows.describe_write_policy(*values) == expected


def _plist(data: dict) -> dict:
    return plistlib.loads(plistlib.dumps(data))  # through the real format, as diskutil output would arrive


def test_diskutil_locked_apfs_volume_on_usb():
    info = _plist({"DeviceIdentifier": "disk5s1", "FilesystemType": "apfs", "BusProtocol": "USB",
                   "MediaName": "Acme Stick", "TotalSize": 32_000_000_000, "Internal": False})
    apfs = _plist({"Containers": [{"Volumes": [{"DeviceIdentifier": "disk5s1", "Encryption": True,
                                               "Locked": True}]}]})
    facts = probe_macos.facts_from_diskutil(info, apfs)
    assert (facts.encrypted, facts.unlocked, facts.scheme) == (True, False, "apfs-encrypted")
    assert (facts.device, facts.bus, facts.removable, facts.size_bytes) == ("disk5s1", "USB", True, 32_000_000_000)


def test_diskutil_plain_fat_stick():
    facts = probe_macos.facts_from_diskutil(_plist({"DeviceIdentifier": "disk4s1", "FilesystemType": "msdos",
                                                    "RemovableMedia": True}))
    assert (facts.encrypted, facts.filesystem, facts.removable) == (None, "msdos", True)


def test_external_volumes_lists_partitions_apfs_volumes_and_bare_disks():
    listing = _plist({"AllDisksAndPartitions": [
        {"DeviceIdentifier": "disk4", "Size": 100, "Partitions": [{"DeviceIdentifier": "disk4s1", "Size": 90}]},
        {"DeviceIdentifier": "disk5", "Size": 200, "APFSVolumes": [{"DeviceIdentifier": "disk5s1", "Size": 150}]},
        {"DeviceIdentifier": "disk6", "Size": 300},
    ]})
    assert watch_macos.external_volumes(listing) == {"disk4s1": 90, "disk5s1": 150, "disk6": 300}


def test_write_policy_is_not_applicable_off_windows():
    import sys

    from agent.capture.media import os_write_policy

    if sys.platform == "win32":
        pytest.skip("on Windows the registry answers; covered by describe_write_policy")
    assert os_write_policy() == f"not-applicable: no such policy on {sys.platform}"
