"""Accounts: argon2id hashes, TOTP with replay protection, lockout, one-time setup links."""

import datetime as dt

import pyotp
import pytest

from collector import accounts, audit
from collector.accounts import LoginRefused
from tests.review.world import PASSWORD


def test_password_is_argon2id_and_checked(world):
    with audit.write_session(world.engine) as s:
        user = accounts.check_password(s, "dsl.amber", PASSWORD)
        assert user.password_hash.startswith("$argon2id$")
        with pytest.raises(LoginRefused, match="Wrong username or password"):
            accounts.check_password(s, "dsl.amber", "not the password")
        with pytest.raises(LoginRefused, match="Wrong username or password"):
            accounts.check_password(s, "nobody", PASSWORD)


def test_lockout_after_repeated_failures_even_with_the_right_password(world):
    now = dt.datetime.now(dt.UTC)
    for _ in range(accounts.MAX_FAILED_LOGINS):
        with audit.write_session(world.engine) as s, pytest.raises(LoginRefused):
            accounts.check_password(s, "dsl.basil", "wrong guess", now)
    with audit.write_session(world.engine) as s, pytest.raises(LoginRefused, match="locked"):
        accounts.check_password(s, "dsl.basil", PASSWORD, now)
    with audit.write_session(world.engine) as s:
        later = now + accounts.LOCKOUT + dt.timedelta(seconds=1)
        assert accounts.check_password(s, "dsl.basil", PASSWORD, later).username == "dsl.basil"


def test_totp_codes_work_once(world):
    now = dt.datetime.now(dt.UTC)
    code = pyotp.TOTP(world.secrets["dsl.amber"]).at(now)
    with audit.write_session(world.engine) as s:
        user = world.user(s, "dsl.amber")
        assert not accounts.check_totp(user, "000000" if code != "000000" else "111111", now)
        assert accounts.check_totp(user, code, now)
        assert not accounts.check_totp(user, code, now), "a replayed code must be refused"
        assert not accounts.check_totp(user, "12ab56", now)


def test_setup_link_works_once_and_reset_clears_the_password(world):
    with audit.write_session(world.engine) as s:
        link = accounts.create_user(s, "new.deputy", "deputy-dsl", ["Northfield"], "New Deputy")
        assert link.user.password_hash is None and link.user.totp_secret
        assert link.url("https://console.school.invalid/").startswith("https://console.school.invalid/setup/")
        found = accounts.user_for_setup_token(s, link.token)
        assert found is link.user
        assert accounts.check_new_password("short", "short", "new.deputy")
        assert accounts.check_new_password("new.deputy-is-long", "new.deputy-is-long", "new.deputy")
        with pytest.raises(LoginRefused):
            accounts.complete_setup(found, "a long enough passphrase", "000000")
        accounts.complete_setup(found, "a long enough passphrase", pyotp.TOTP(found.totp_secret).now())
        assert accounts.user_for_setup_token(s, link.token) is None
        reset = accounts.issue_setup_link(found)
        assert found.password_hash is None and accounts.user_for_setup_token(s, reset.token) is found
        expired = found.setup_expires_at + dt.timedelta(seconds=1)
        assert accounts.user_for_setup_token(s, reset.token, now=expired) is None


def test_bad_account_input_is_a_clear_error(world):
    from collector.errors import CollectorError
    with audit.write_session(world.engine) as s:
        for args, match in ((("x y", "dsl", ["Northfield"]), "username"), (("ok.name", "janitor", ["Northfield"]),
                            "unknown role"), (("ok.name", "dsl", ["Nowhere"]), "no site named"),
                            (("dsl.amber", "dsl", ["Northfield"]), "exists already"), (("ok.name", "dsl", []), "site")):
            with pytest.raises(CollectorError, match=match):
                accounts.create_user(s, *args)
