"""The simulated humans' decisions (``starter.humans.next_actions``), without a stack; the driver
itself runs in the real-stack tests (test_esign_lifecycle, test_esign_faults, test_blocked_stack,
test_replacement_stack) and in ``mdco demo``."""

from __future__ import annotations

from starter.humans import Action, Humans, Memo, _record, demo_intakes, next_actions

WF = "onboarding-glow-austin-x"


def status(stage: str, waiting: str = "", **fields) -> dict:
    return {"workflow_id": WF, "stage": stage, "waiting_on": waiting, "offers": [], "protocols": [],
            "pharmacies": [], "envelopes": [], "physician_npi": None, **fields}


def test_ops_approve_a_plan_once():
    memo, humans = Memo(), Humans()
    st = status("needs_assessment", "ops")
    assert next_actions(st, memo, humans) == [Action("plan")]
    _record(memo, Action("plan"), ok=True)
    assert next_actions(st, memo, humans) == []
    assert next_actions(status("needs_assessment", "system"), Memo(), humans) == []


def test_the_first_open_offer_is_accepted_or_declined_once_when_asked():
    offers = [{"npi": "1111111111", "status": "declined"}, {"npi": "2222222222", "status": "open"},
              {"npi": "3333333333", "status": "open"}]
    st = status("matching", "physician", offers=offers)
    assert next_actions(st, Memo(), Humans()) == [Action("accept", "2222222222")]
    memo, humans = Memo(), Humans(decline_first={WF})
    assert next_actions(st, memo, humans) == [Action("decline", "2222222222")]
    _record(memo, Action("decline", "2222222222"), ok=False)  # declined once whatever the answer said
    offers[1]["status"] = "declined"
    assert next_actions(st, memo, humans) == [Action("accept", "3333333333")]
    assert next_actions(status("matching", "physician", offers=offers, physician_npi="3333333333"),
                        memo, humans) == []


def test_protocols_and_each_unconfirmed_pharmacy():
    memo, humans = Memo(), Humans()
    st = status("protocol_setup", "physician", physician_npi="2222222222", protocols=[{"name": "x"}])
    assert next_actions(st, memo, humans) == [Action("protocols", "2222222222")]
    _record(memo, Action("protocols", "2222222222"), ok=True)
    assert next_actions(st, memo, humans) == []
    assert next_actions(status("protocol_setup", "system"), Memo(), humans) == []  # not drafted yet
    pharmacies = [{"pharmacy_id": "ph-a", "status": "confirmed"}, {"pharmacy_id": "ph-b", "status": "packet_sent"},
                  {"pharmacy_id": "ph-c", "status": "packet_sent"}]
    st = status("pharmacy_coordination", "pharmacy", pharmacies=pharmacies)
    assert next_actions(st, memo, humans) == [Action("pharmacy", "ph-b"), Action("pharmacy", "ph-c")]
    _record(memo, Action("pharmacy", "ph-b"), ok=True)
    _record(memo, Action("pharmacy", "ph-c"), ok=False)  # refused or failed: asked again next time
    assert next_actions(st, memo, humans) == [Action("pharmacy", "ph-c")]


def test_signers_sign_each_open_current_envelope_once_unless_told_not_to():
    envelopes = [{"envelope_id": "e1", "status": "completed"}, {"envelope_id": "e2", "status": "sent"},
                 {"envelope_id": "e3", "status": "delivered"},
                 {"envelope_id": "e0", "status": "voided", "current": False}]
    st = status("agreements", "signers", envelopes=envelopes)
    memo = Memo()
    assert next_actions(st, memo, Humans()) == [Action("sign", "e2"), Action("sign", "e3")]
    _record(memo, Action("sign", "e2"), ok=True)
    assert next_actions(st, memo, Humans()) == [Action("sign", "e3")]
    assert next_actions(st, Memo(), Humans(sign=False)) == []
    assert next_actions(status("agreements", "ops", envelopes=envelopes), Memo(), Humans()) == []


def test_the_protocol_packet_is_signed_even_when_agreements_are_not():
    packet = [{"envelope_id": "p1", "status": "sent", "agreement_kind": "protocol_packet"}]
    st = status("protocol_setup", "signers", envelopes=packet, protocols=[{"service": "neurotoxins"}])
    assert next_actions(st, Memo(), Humans(sign=False)) == [Action("sign", "p1")]
    assert next_actions(status("protocol_setup", "ops", envelopes=packet), Memo(), Humans()) == []


def test_nothing_to_do_when_launched_or_blocked():
    for stage in ("launched", "blocked", "cancelled"):
        assert next_actions(status(stage, "ops"), Memo(), Humans()) == []


def test_demo_intakes_get_fresh_keys():
    intakes = demo_intakes(4, "r1")
    assert len({i["clinic_key"] for i in intakes}) == 4 and all("-r1-" in i["clinic_key"] for i in intakes)


def test_one_pharmacy_declines_once_when_told_then_the_others_confirm():
    pharmacies = [{"pharmacy_id": "ph-a", "status": "packet_sent"}, {"pharmacy_id": "ph-b", "status": "packet_sent"}]
    st = status("pharmacy_coordination", "pharmacy", pharmacies=pharmacies)
    memo, humans = Memo(), Humans(decline_pharmacy={WF})
    assert next_actions(st, memo, humans) == [Action("pharmacy_decline", "ph-a")]
    _record(memo, Action("pharmacy_decline", "ph-a"), ok=True)
    pharmacies[0]["status"] = "declined"
    pharmacies.append({"pharmacy_id": "ph-c", "status": "packet_sent"})  # the next qualifying one is asked
    assert next_actions(st, memo, humans) == [Action("pharmacy", "ph-b"), Action("pharmacy", "ph-c")]
    assert next_actions(st, Memo(), Humans()) == [Action("pharmacy", "ph-b"), Action("pharmacy", "ph-c")]


def test_page_answers_and_the_api_cover_the_same_actions():
    from starter.humans import PAGE_ANSWERS, _request

    assert _request(Action("pharmacy_decline", "ph-a"), WF, Humans(pharmacy_reason="closed")) == (
        f"/onboardings/{WF}/pharmacies/ph-a/decline", {"reason": "closed"})
    for kind in PAGE_ANSWERS:  # every page answer also has its API call (the benches' mode)
        assert _request(Action(kind, "x"), WF, Humans())[0].startswith(f"/onboardings/{WF}/")
