"""``mdco demo``'s oversight after launch: the sweep date it picks puts one of the demo clinics'
credentials on a ladder step not yet notified, and never lapses any live clinic's credential."""

from __future__ import annotations

from datetime import date

from domain.renewals import RenewalView
from starter.demo import renewal_step_as_of

TODAY = date(2026, 11, 28)


def view(holder: str, expires: date, clinics: list[str], sent: list[int] | None = None) -> RenewalView:
    return RenewalView(npi=holder, holder_id=holder, credential="license", state="TX", expires_on=expires,
                       days_left=(expires - TODAY).days, notified_steps=sent or [], clinics=clinics)


def test_the_earliest_unsent_step_of_a_demo_clinic_without_lapsing_anything():
    views = [view("old", date(2027, 4, 1), ["old-clinic"]),
             view("a", date(2027, 7, 30), ["demo-a"]),
             view("b", date(2027, 3, 2), ["demo-b", "old-clinic"], sent=[90])]
    as_of, chosen, key = renewal_step_as_of(views, ["demo-a", "demo-b"])
    # b's 90-day step was sent (an earlier demo run): its 60-day step, before any expiry
    assert (as_of, chosen.holder_id, key) == (date(2027, 1, 1), "b", "demo-b")
    # a's steps all fall after old's expiry: the demo would lapse it, so only b qualifies
    assert renewal_step_as_of(views, ["demo-a"]) is None
    assert renewal_step_as_of([], ["demo-a"]) is None
    every = [view("b", date(2027, 3, 2), ["demo-b"], sent=[90, 60, 30, 14, 7])]
    assert renewal_step_as_of(every, ["demo-b"]) is None
