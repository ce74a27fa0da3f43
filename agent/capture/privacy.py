"""Where WardWatch must not look: password fields, credential prompts, sign-in pages and what the school excludes.

Pure logic, no I/O. The session helper asks `PrivacyPolicy.exclusion_for` about the focused window before each key;
a key typed in an excluded context is dropped at once and never reaches the detection buffer. The platform checks
for a focused password field live in thin modules (privacy_windows, privacy_macos) and are passed in as a flag.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.capture.window import ActiveWindow

# Programs whose only job is to ask for a secret: polkit agents, keyrings, askpass helpers, pinentry, password
# managers, and the OS credential dialogs (UAC, Windows sign-in, macOS SecurityAgent).
CREDENTIAL_PROCESSES = frozenset({
    "sudo", "su", "doas", "pkexec", "polkit-agent-helper-1", "polkit-gnome-authentication-agent-1",
    "polkit-kde-authentication-agent-1", "polkit-mate-authentication-agent-1", "lxpolkit", "lxqt-policykit-agent",
    "xfce-polkit", "gcr-prompter", "gnome-keyring-daemon", "seahorse", "kwalletd5", "kwalletd6", "kwalletmanager5",
    "ksshaskpass", "ssh-askpass", "x11-ssh-askpass", "gnome-ssh-askpass", "lxqt-openssh-askpass", "pinentry",
    "pinentry-gtk-2", "pinentry-gnome3", "pinentry-qt", "pinentry-curses", "pinentry-tty", "keepassxc", "keepass",
    "bitwarden", "1password", "consent", "credentialuibroker", "logonui", "lockapp", "securityagent", "coreautha",
    "loginwindow",
})

# Titles of credential prompts and sign-in pages. Word-bounded so that "passwordless" or "pinned" do not match.
CREDENTIAL_TITLE_PATTERN = re.compile(
    r"\[sudo\]|\bpassword\b|\bpasswords\b|\bpassphrase\b|\bpasscode\b|\bpin\b|\bsign[ -]?in\b|\blog[ -]?in\b|"
    r"\blog[ -]?on\b|\bauthenticat(?:e|ion)\b|\bunlock\b|\bkeyring\b|\bkwallet\b|\bcredentials?\b|"
    r"\bverification code\b|\bone[- ]time (?:code|password)\b|\b2-step verification\b|\btwo-factor\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Exclusion:
    reason: str        # "password-field", "credential-prompt", "sign-in-title", "admin-application", "admin-title"
    drop_title: bool   # the school excluded it outright: its title is not scanned either

    def describe(self) -> str:
        return self.reason  # safe to log: never the title or the keys


def normalise_process(name: str) -> str:
    name = name.strip().lower()
    return name[:-4] if name.endswith(".exe") else name


def _title_matcher(pattern: str) -> re.Pattern[str]:
    """An admin pattern: `re:` starts a regular expression, otherwise a case-insensitive glob or plain substring."""
    if pattern.startswith("re:"):
        return re.compile(pattern[3:], re.IGNORECASE)
    if any(ch in pattern for ch in "*?["):
        return re.compile(fnmatch.translate(pattern), re.IGNORECASE)
    return re.compile(re.escape(pattern), re.IGNORECASE)


@dataclass(frozen=True)
class PrivacyPolicy:
    excluded_applications: frozenset[str] = frozenset()
    excluded_titles: tuple[re.Pattern[str], ...] = field(default_factory=tuple)

    @classmethod
    def build(cls, applications: Iterable[str] = (), title_patterns: Iterable[str] = ()) -> PrivacyPolicy:
        """Raises ValueError naming the bad pattern (never silently ignore an exclusion the school asked for)."""
        matchers = []
        for pattern in title_patterns:
            try:
                matchers.append(_title_matcher(str(pattern)))
            except re.error as exc:
                raise ValueError(f"excluded title pattern {pattern!r} is not valid: {exc}") from exc
        return cls(frozenset(normalise_process(a) for a in applications if str(a).strip()), tuple(matchers))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PrivacyPolicy:
        """From agent.json's optional `privacy` object: {"excluded_applications": [...], "excluded_titles": [...]}."""
        privacy = config.get("privacy") or {}
        return cls.build(privacy.get("excluded_applications", ()), privacy.get("excluded_titles", ()))

    def exclusion_for(self, window: ActiveWindow | None, password_field: bool = False) -> Exclusion | None:
        """Why keys typed now must be dropped, or None if they may be matched."""
        if password_field:
            return Exclusion("password-field", drop_title=False)
        if window is None:
            return None
        process = normalise_process(window.application)
        if process in self.excluded_applications:
            return Exclusion("admin-application", drop_title=True)
        if any(m.search(window.title) for m in self.excluded_titles):
            return Exclusion("admin-title", drop_title=True)
        if process in CREDENTIAL_PROCESSES or process.startswith("pinentry"):
            return Exclusion("credential-prompt", drop_title=False)
        if CREDENTIAL_TITLE_PATTERN.search(window.title):
            return Exclusion("sign-in-title", drop_title=False)
        return None
