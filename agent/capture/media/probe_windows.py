"""Windows: BitLocker status from the shell property and Win32_EncryptableVolume, bus type from Storage WMI.

Imported only on Windows at run time (the parsers below are plain functions, so they are tested everywhere).
Everything goes through one PowerShell call per volume: documented cmdlets and classes, no extra packages.
  - System.Volume.BitLockerProtection: readable without administrator rights.
  - Win32_EncryptableVolume (root/CIMV2/Security/MicrosoftVolumeEncryption): ProtectionStatus, ConversionStatus,
    GetLockStatus(); needs administrator (the service runs as LocalSystem).
  - Get-Partition | Get-Disk: BusType, so a USB hard disk that Windows calls a fixed drive is still caught.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

from agent.capture.media.report import BITLOCKER
from agent.capture.media.verdict import OsFacts

POWERSHELL = ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command"]
PROBE_TIMEOUT_S = 20
REMOVABLE_BUSES = {"USB", "SD", "MMC"}

# System.Volume.BitLockerProtection values as Explorer shows them.
SHELL_PROTECTION = {
    1: ("on", True, True),  # (label, encrypted, unlocked)
    2: ("off", False, None),
    3: ("encrypting", True, True),
    4: ("decrypting", True, True),
    5: ("suspended", True, True),
    6: ("on, locked", True, False),
    8: ("waiting for activation", True, True),
}

_PROBE_SCRIPT = r"""
$ErrorActionPreference = 'SilentlyContinue'
$letter = '{letter}'
$out = @{{}}
$out.shell = (New-Object -ComObject Shell.Application).NameSpace(17).ParseName("$letter`:").ExtendedProperty(
  'System.Volume.BitLockerProtection')
$v = Get-CimInstance -Namespace 'root/CIMV2/Security/MicrosoftVolumeEncryption' -ClassName Win32_EncryptableVolume `
  -Filter "DriveLetter='$letter`:'"
if ($v) {{
  $out.protection = $v.ProtectionStatus
  $out.conversion = $v.ConversionStatus
  $out.lock = (Invoke-CimMethod -InputObject $v -MethodName GetLockStatus).LockStatus
}}
$disk = Get-Partition -DriveLetter $letter | Get-Disk
$out.bus = [string]$disk.BusType
$out.model = $disk.Model
$out.serial = $disk.SerialNumber
$out.disk = $disk.Number
$vol = Get-Volume -DriveLetter $letter
$out.filesystem = $vol.FileSystemType
$out.size = $vol.Size
$out | ConvertTo-Json -Compress
"""


def drive_letter(path: str) -> str | None:
    """'E' from E:, E:\\ or \\\\.\\E: (the raw volume path the header reader opens)."""
    match = re.fullmatch(r"(?:\\\\[.?]\\)?([A-Za-z]):\\?", path)
    return match.group(1).upper() if match else None


def facts_from_windows(values: dict) -> OsFacts:
    """OsFacts from the probe script's JSON (keys: shell, protection, conversion, lock, bus, model, ...)."""
    facts = OsFacts(
        model=(values.get("model") or "").strip() or None,
        serial=(values.get("serial") or "").strip() or None,
        bus=(values.get("bus") or None),
        filesystem=values.get("filesystem") or None,
        size_bytes=values.get("size") if isinstance(values.get("size"), int) else None,
    )
    if values.get("disk") is not None:
        facts.device = f"PhysicalDrive{values['disk']}"
    if facts.bus:
        facts.removable = facts.bus.upper() in REMOVABLE_BUSES
        facts.evidence.append(f"bus type {facts.bus}")
    shell = values.get("shell")
    if isinstance(shell, int) and shell in SHELL_PROTECTION:
        label, facts.encrypted, facts.unlocked = SHELL_PROTECTION[shell]
        facts.evidence.append(f"Explorer BitLocker protection: {label}")
    if values.get("lock") is not None:
        # WMI is the authority when the service may ask it: it knows the lock state exactly.
        facts.unlocked = values["lock"] == 0
        if values.get("conversion") not in (None, 0):
            facts.encrypted = True
        elif values.get("conversion") == 0 and values.get("lock") == 0:
            facts.encrypted = False
        facts.evidence.append(
            f"Win32_EncryptableVolume: protection {values.get('protection')}, conversion "
            f"{values.get('conversion')}, {'unlocked' if values['lock'] == 0 else 'locked'}"
        )
    if facts.encrypted:
        facts.scheme = BITLOCKER
    return facts


def probe(path: str, st: os.stat_result | None) -> OsFacts:
    letter = drive_letter(path)
    if letter is None:
        return OsFacts(evidence=["not a drive letter: no Windows volume details"])
    try:
        done = subprocess.run(
            [*POWERSHELL, _PROBE_SCRIPT.format(letter=letter)],
            capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
        )
        values = json.loads(done.stdout or "{}")
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        return OsFacts(evidence=[f"Windows volume probe failed: {type(exc).__name__}"])
    return facts_from_windows(values if isinstance(values, dict) else {})


# ---- "Deny write access to removable drives not protected by BitLocker"

FVE_POLICY_KEY = r"SYSTEM\CurrentControlSet\Policies\Microsoft\FVE"
FVE_GPO_KEY = r"SOFTWARE\Policies\Microsoft\FVE"
# "Removable Disks: Deny write access" (Removable Storage Access) overrides the BitLocker setting when enabled.
REMOVABLE_DISKS_KEY = (
    r"SOFTWARE\Policies\Microsoft\Windows\RemovableStorageDevices\{53f5630d-b6bf-11d0-94f2-00a0c91efb8b}"
)


def describe_write_policy(deny_write: int | None, deny_cross_org: int | None, deny_all_removable: int | None) -> str:
    """One word (and a reason) for the technician: is writing to an unencrypted stick blocked by Windows?"""
    if deny_all_removable == 1:
        return "overridden: 'Removable Disks: Deny write access' blocks writes to every removable disk"
    if deny_write == 1:
        return "enabled, also for drives from other organisations" if deny_cross_org == 1 else "enabled"
    if deny_write == 0:
        return "disabled"
    return "not-configured"


def _read_dword(hive: object, key: str, name: str) -> int | None:
    import winreg

    try:
        with winreg.OpenKey(hive, key) as handle:
            value, kind = winreg.QueryValueEx(handle, name)
    except OSError:
        return None
    return value if kind == winreg.REG_DWORD else None


def os_write_policy() -> str:
    """Whether RDVDenyWriteAccess is set on this machine (read from the registry; no admin rights needed)."""
    import winreg

    hklm = winreg.HKEY_LOCAL_MACHINE
    return describe_write_policy(
        _read_dword(hklm, FVE_POLICY_KEY, "RDVDenyWriteAccess"),
        _read_dword(hklm, FVE_GPO_KEY, "RDVDenyCrossOrg"),
        _read_dword(hklm, REMOVABLE_DISKS_KEY, "Deny_Write"),
    )
