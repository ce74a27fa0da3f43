"""The keyword page in Debian's chromium: a DSL finds it from the menu, a mistake comes back beside its field with
what was typed kept, and the corrected rule is added."""

import pytest

from tests.web.test_browser import browser, new_account, server, set_up_in_browser  # noqa: F401

pytestmark = pytest.mark.browser


def test_a_dsl_adds_a_rule_after_fixing_the_severity(server, browser):  # noqa: F811
    world, base = server
    context, page, _secret = set_up_in_browser(browser, base, new_account(world, "dsl.iris", "dsl"))
    try:
        page.click("nav >> text=Keywords")
        page.select_option("#category", "bullying")
        page.fill("#slug", "crumble-face")
        page.fill("#phrases", "crumble face")
        page.fill("#severity", "9")
        page.fill("#note", "a taunt used at this school")
        page.click("#rule-form button[type=submit]")
        assert "severity" in page.inner_text("#error-severity")
        assert page.input_value("#phrases") == "crumble face"  # nothing typed is lost
        page.fill("#severity", "3")
        page.click("#rule-form button[type=submit]")
        page.wait_for_url("**/keywords/*?done=rules")
        assert "bullying.site.crumble-face" in page.inner_text("main")
        assert page.locator("#error-severity").count() == 0
    finally:
        context.close()
