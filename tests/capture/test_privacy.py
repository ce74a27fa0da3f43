"""Privacy decisions: credential prompts, sign-in pages, admin exclusions and platform password-field flags."""

from __future__ import annotations

import pytest

from agent.capture.privacy import PrivacyPolicy
from agent.capture.privacy_macos import is_secure_text_role
from agent.capture.privacy_windows import is_password_edit
from agent.capture.window import ActiveWindow


def win(title: str, app: str = "firefox") -> ActiveWindow:
    return ActiveWindow(title=title, application=app, pid=1, window_id=1)


@pytest.mark.parametrize("title, app", [
    ("[sudo] password for ayesha.khan:", "xterm"),
    ("Authentication Required", "polkit-gnome-authentication-agent-1"),
    ("Unlock Keyring", "gcr-prompter"),
    ("OpenSSH Authentication Passphrase request", "ssh-askpass"),
    ("KDE Wallet Service", "kwalletd5"),
    ("Sign in - Google Accounts - Mozilla Firefox", "firefox"),
    ("Log in to Twitter / X", "chrome.exe"),
    ("Microsoft account | Sign-in", "msedge.exe"),
    ("Enter your password", "firefox"),
    ("User Account Control", "consent.exe"),
    ("Enter PIN", "firefox"),
])
def test_credential_prompts_are_excluded(title, app):
    exclusion = PrivacyPolicy().exclusion_for(win(title, app))
    assert exclusion is not None and not exclusion.drop_title


@pytest.mark.parametrize("title", [
    "Year 9 English - Notes", "Passwordless logins explained - Wikipedia", "Pinned tabs - Mozilla Firefox",
    "Blogging for beginners", "Catalogue of books - Library", "Spinach recipes",
])
def test_ordinary_windows_are_not_excluded(title):
    assert PrivacyPolicy().exclusion_for(win(title, "firefox")) is None


def test_admin_exclusions_match_applications_and_title_patterns_and_skip_titles_too():
    policy = PrivacyPolicy.from_config({"privacy": {
        "excluded_applications": ["SIMS.exe", "counselling-notes"],
        "excluded_titles": ["*School Nurse*", "re:^Arbor\\b", "Staff Payroll"]}})
    for window in (win("Pupil record", "sims.exe"), win("x", "counselling-notes"), win("The school nurse log"),
                   win("Arbor - MIS"), win("staff payroll 2026")):
        exclusion = policy.exclusion_for(window)
        assert exclusion is not None and exclusion.drop_title, window
    assert policy.exclusion_for(win("Harbor tides")) is None


def test_a_bad_admin_pattern_is_a_clear_error():
    with pytest.raises(ValueError, match="not valid"):
        PrivacyPolicy.from_config({"privacy": {"excluded_titles": ["re:(unclosed"]}})


def test_a_focused_password_field_excludes_any_window():
    exclusion = PrivacyPolicy().exclusion_for(win("Year 9 English"), password_field=True)
    assert exclusion is not None and exclusion.reason == "password-field"


def test_platform_password_field_rules():
    assert is_password_edit("Edit", 0x50010020)
    assert not is_password_edit("Edit", 0x50010000)
    assert not is_password_edit("Button", 0x20)  # the same bit means something else on other classes
    assert is_secure_text_role("AXTextField", "AXSecureTextField")
    assert not is_secure_text_role("AXTextField", None)
