"""The pure review rules: who sees what, and which step each person may take."""

import pytest

from collector.review import rules
from collector.review.rules import AlertFacts, Assessment, Person, ReviewRefused, SiteContacts, Step

SITE = 1
DSL = Person(1, "dsl", frozenset({SITE}), "amber")
DEPUTY = Person(2, "deputy-dsl", frozenset({SITE}), "basil")
HEAD = Person(3, "headteacher", frozenset({SITE}), "dara")
TECH = Person(4, "technician", frozenset({SITE}), "evan")
CHAIR = Person(5, "governor", frozenset({SITE}), "fern")
ADMIN = Person(6, "admin", frozenset({SITE}), "gale")
OTHER_SITE_DSL = Person(7, "dsl", frozenset({2}), "zed")
DSL3 = Person(8, "dsl", frozenset({SITE}), "cora")
CONTACTS = SiteContacts(allegations_user_id=DSL.id, chair_user_id=CHAIR.id, head_logins=frozenset({"dara"}))
GOOD = Assessment("child-victim", "inappropriate", "speak-to-pupil", "spoke to form tutor")


def facts(state="new", user="pupil.one", band="secondary", category="self-harm"):
    return AlertFacts(site_id=SITE, category=category, age_band=band, user_name=user, state=state)


def test_content_roles_see_pupil_alerts_and_others_do_not():
    a = facts()
    assert [p.id for p in (DSL, DEPUTY, HEAD, TECH, CHAIR, ADMIN, OTHER_SITE_DSL) if rules.can_see(p, a, CONTACTS)] \
        == [DSL.id, DEPUTY.id, HEAD.id, ADMIN.id]


def test_staff_alerts_go_to_the_head_and_the_allegations_person_only():
    a = facts(user="SCHOOL\\Basil", band="staff")
    assert {p.id for p in (DSL, DEPUTY, HEAD, TECH, CHAIR, ADMIN, DSL3) if rules.can_see(p, a, CONTACTS)} \
        == {HEAD.id, DSL.id}


def test_alerts_about_the_head_go_to_the_chair_and_the_allegations_person():
    a = facts(user="dara@school.invalid", band="staff")
    assert rules.audience(a, CONTACTS) == rules.HEAD
    assert {p.id for p in (DSL, DEPUTY, HEAD, TECH, CHAIR, ADMIN) if rules.can_see(p, a, CONTACTS)} \
        == {DSL.id, CHAIR.id}
    # The chair sees only such alerts.
    assert not rules.can_see(CHAIR, facts(), CONTACTS)


def test_nobody_sees_or_reviews_an_alert_about_themselves():
    a = facts(user="amber")
    assert not rules.can_see(DSL, a, CONTACTS)
    with pytest.raises(ReviewRefused):
        rules.assess(DSL, a, CONTACTS, GOOD)


def test_admin_sees_but_cannot_review():
    assert rules.can_see(ADMIN, facts(), CONTACTS)
    with pytest.raises(ReviewRefused, match="not one of the people"):
        rules.assess(ADMIN, facts(), CONTACTS, GOOD)


def test_assess_then_a_different_reviewer_confirms():
    d = rules.assess(DSL, facts(), CONTACTS, GOOD)
    assert (d.step, d.new_state) == ("assess", rules.AWAITING_SECOND)
    steps = [Step("assess", DSL.id, "speak-to-pupil")]
    with pytest.raises(ReviewRefused, match="different senior reviewer"):
        rules.confirm(DSL, facts(rules.AWAITING_SECOND), CONTACTS, steps)
    d = rules.confirm(DEPUTY, facts(rules.AWAITING_SECOND), CONTACTS, steps)
    assert (d.new_state, d.outcome) == (rules.CLOSED, "speak-to-pupil")


@pytest.mark.parametrize("outcome", sorted(rules.ESCALATING_OUTCOMES))
def test_referral_outcomes_escalate(outcome):
    steps = [Step("assess", DSL.id, outcome)]
    assert rules.confirm(DEPUTY, facts(rules.AWAITING_SECOND), CONTACTS, steps).new_state == rules.ESCALATED


def test_dispute_goes_to_a_headteacher_who_was_not_a_reviewer():
    steps = [Step("assess", DSL.id, "no-further-action")]
    with pytest.raises(ReviewRefused, match="why you disagree"):
        rules.dispute(DEPUTY, facts(rules.AWAITING_SECOND), CONTACTS, steps, "  ")
    d = rules.dispute(DEPUTY, facts(rules.AWAITING_SECOND), CONTACTS, steps, "needs a referral")
    assert d.new_state == rules.DISPUTED
    steps.append(Step("dispute", DEPUTY.id))
    with pytest.raises(ReviewRefused, match="headteacher"):
        rules.decide(DSL3, facts(rules.DISPUTED), CONTACTS, steps, "refer-social-care", "x")
    d = rules.decide(HEAD, facts(rules.DISPUTED), CONTACTS, steps, "refer-social-care", "agree with the deputy")
    assert (d.new_state, d.outcome) == (rules.ESCALATED, "refer-social-care")


def test_a_head_who_reviewed_cannot_decide_the_dispute():
    steps = [Step("assess", HEAD.id, "no-further-action"), Step("dispute", DSL.id)]
    with pytest.raises(ReviewRefused, match="took part"):
        rules.decide(HEAD, facts(rules.DISPUTED), CONTACTS, steps, "log-concern", "x")


@pytest.mark.parametrize("state", [rules.AWAITING_SECOND, rules.DISPUTED, rules.CLOSED, rules.ESCALATED])
def test_assess_only_from_new(state):
    with pytest.raises(ReviewRefused, match="reload"):
        rules.assess(DSL, facts(state), CONTACTS, GOOD)


@pytest.mark.parametrize("state", [rules.NEW, rules.DISPUTED, rules.CLOSED, rules.ESCALATED])
def test_confirm_only_when_awaiting_second(state):
    with pytest.raises(ReviewRefused):
        rules.confirm(DEPUTY, facts(state), CONTACTS, [Step("assess", DSL.id, "log-concern")])


@pytest.mark.parametrize("field,value", [("involved", "someone"), ("nature", "bad"), ("outcome", "expel"),
                                         ("reason", "   ")])
def test_assessment_fields_are_checked(field, value):
    bad = Assessment(**{**GOOD.__dict__, field: value})
    with pytest.raises(ReviewRefused):
        rules.assess(DSL, facts(), CONTACTS, bad)


def test_staff_alert_reviewed_by_head_and_allegations_person_and_disputes_about_the_head_go_to_the_chair():
    staff = facts(user="basil", band="staff")
    assert rules.may_review(HEAD, staff, CONTACTS) and rules.may_review(DSL, staff, CONTACTS)
    assert not rules.may_review(DSL3, staff, CONTACTS)
    head_alert = facts(user="dara", band="staff", state=rules.DISPUTED)
    assert rules.may_decide_dispute(CHAIR, head_alert, CONTACTS)
    assert not rules.may_decide_dispute(HEAD, head_alert, CONTACTS)


def test_login_names_are_compared_without_domain_or_case():
    assert rules.normalise_login("SCHOOL\\JBloggs") == rules.normalise_login("jbloggs@school.invalid") == "jbloggs"
