"""Activities of the post-launch oversight: chart-review cycles, the daily compliance sweep (renewal
ladder, lapses, OIG LEIE re-screen, overdue reviews and events), adverse-event escalation, offboarding.

Every one is idempotent: notices go through the notification log (one e-mail per key), ladder steps
and suspensions are unique rows, audit entries carry idempotency keys. Logs carry clinic keys, NPIs,
pharmacy ids and credential kinds only.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta

from sqlalchemy.engine import Engine
from temporalio import activity

from activities.onboarding import OnboardingActivities
from api import links
from domain import renewals
from domain.codes import oversight_id_for
from domain.intake import Intake
from domain.messages import ChartReviewRequest, Notice
from domain.oversight import (AdverseEventWatch, ComplianceAlert, OffboardRecord, ReviewBasis, SweepRequest,
                              SweepSummary, cycle_days, reported_for_cycle, review_basis)
from domain.renewals import LAPSED, Credential
from store import agreements, audit, exclusions, onboardings, oversight, roster
from store.tables import now_utc

log = activity.logger
SWEEP_WORKFLOW = "compliance"  # the audit trail / notification namespace of the sweep's own notices


def dated_credentials(engine: Engine, clinics: list[dict], *,
                      fill_defaults: bool = False) -> tuple[dict[str, Credential], dict[str, set[str]]]:
    """Every dated credential the live ``clinics`` depend on, by key, and the clinics each serves (the
    sweep, ``mdco renewals`` and the API's metrics read the same). An agreement's term ends on its stored
    renewal date; one without a date ends a policy term after the launch, and ``fill_defaults`` (the
    sweep) stores that date on it so later reads no longer depend on the launch row."""
    creds: dict[str, Credential] = {}
    by_clinic: dict[str, set[str]] = defaultdict(set)

    def add(items: list[Credential], clinic: str) -> None:
        for c in items:
            creds[c.key] = c
            by_clinic[c.key].add(clinic)

    physicians: dict[str, object] = {}
    for clinic in clinics:
        key, states = clinic["key"], clinic["states"]
        npi = clinic.get("physician_npi")
        if npi:
            if npi not in physicians:
                physicians[npi] = roster.get_physician(engine, npi)
            if physicians[npi] is not None:
                add(renewals.physician_credentials(physicians[npi], states), key)  # type: ignore[arg-type]
        if clinic.get("intake"):
            add(renewals.midlevel_credentials(Intake.model_validate(clinic["intake"])), key)
        launched = oversight.launched_onboarding(engine, key)
        if launched is not None:
            wf = launched["workflow_id"]
            launched_on = (launched.get("launched_at") or clinic.get("activated_at") or now_utc()).date()
            signed = [a for a in agreements.list_agreements(engine, wf) if a["status"] == "completed"]
            if fill_defaults and any(a["renews_on"] is None for a in signed):
                agreements.fill_renewal_dates(engine, wf, renewals.default_renewal_date(launched_on))
                signed = [a for a in agreements.list_agreements(engine, wf) if a["status"] == "completed"]
            dates = {a["kind"]: a["renews_on"] for a in signed if a["renews_on"] is not None}
            add(renewals.agreement_credentials(wf, [a["kind"] for a in signed], launched_on, dates), key)
            serving = [a.pharmacy_id for a in onboardings.list_pharmacy_assignments(engine, wf)
                       if a.status != "declined"]
            for pid, licences in oversight.pharmacy_licenses(engine, serving).items():
                add(renewals.pharmacy_credentials(pid, licences, states), key)
    return creds, by_clinic


def last_cycle_start(engine: Engine, clinic_key: str, before_cycle: int | None = None) -> datetime | None:
    """When the clinic's current chart-review cycle began: the last review opened (before ``before_cycle``),
    else the clinic going live; None for a clinic never live."""
    opened = [r["opened_at"] for r in oversight.list_reviews(engine, clinic_key)
              if before_cycle is None or r["cycle"] < before_cycle]
    if opened:
        return max(opened)
    return (onboardings.get_clinic(engine, clinic_key) or {}).get("activated_at")


def chart_count_period(engine: Engine, clinic_key: str, today: date, period_start: date | None = None,
                       period_end: date | None = None) -> tuple[date, date]:
    """The period of a chart-count report: what was given, the rest the current review cycle's, from the
    day the last review opened (or the clinic went live) to ``today``; an end given before the cycle began
    alone is that one day."""
    end = period_end or today
    if period_start is not None:
        return period_start, end
    began = last_cycle_start(engine, clinic_key)
    return min(began.date(), end) if began else end, end


def report_chart_count(engine: Engine, clinic_key: str, charts: int, period_start: date | None,
                       period_end: date | None, actor: str, at: datetime) -> dict:
    """A clinic (or ops for it) reports its chart count for a period (:func:`chart_count_period`): stored
    (a re-report of the period replaces it) and audited with the actor and the count replaced, a repeat of
    the same count changing nothing. The row, with ``previous`` (the count replaced, None), ``changed`` and
    ``status`` (``reported`` | ``replaced`` | ``unchanged``).
    Refused as ``store.oversight.report_chart_count`` is."""
    start, end = chart_count_period(engine, clinic_key, at.date(), period_start, period_end)
    row, before = oversight.report_chart_count(engine, clinic_key, charts, start, end, actor, at)
    changed = before != charts
    if changed:
        wf = oversight_id_for(clinic_key)
        audit.audit(engine, wf, actor, "chart_count_reported" if before is None else "chart_count_replaced", at=at,
                    detail={"period_start": start.isoformat(), "period_end": end.isoformat(), "charts": charts,
                            "previous": before},
                    idem_key=f"{wf}:chart-count:{start.isoformat()}:{end.isoformat()}:{at.isoformat()}")
    status = "unchanged" if not changed else "reported" if before is None else "replaced"
    return {**row, "previous": before, "changed": changed, "status": status}


class OversightActivities:
    def __init__(self, onboarding: OnboardingActivities):
        self._onb = onboarding
        self.engine: Engine = onboarding.engine

    def all(self) -> list:
        return [self.open_chart_review, self.compliance_sweep, self.offboard_clinic, self.escalate_adverse_event]

    # ------------------------------------------------------------------ chart reviews
    @activity.defn(name="open_chart_review")
    def open_chart_review(self, req: ChartReviewRequest) -> None:
        """Open one chart-review cycle: record and audit it and ask the medical director for the sample."""
        wf = oversight_id_for(req.clinic_key)
        review_id = f"{req.clinic_key}-cr-{req.cycle}"
        opened = activity.info().started_time if activity.in_activity() else now_utc()
        monthly = int((onboardings.get_clinic(self.engine, req.clinic_key) or {}).get("monthly_patients") or 0)
        basis = self.chart_review_basis(req.clinic_key, req.sample_percent)
        rule = renewals.policy().chart_review
        first, last = cycle_days(last_cycle_start(self.engine, req.clinic_key, req.cycle), opened)
        reported = reported_for_cycle(oversight.chart_counts(self.engine, req.clinic_key), first, last)
        if reported is not None:  # the clinic reported its charts for (part of) this cycle
            sample_basis, charts = "reported", rule.sample_of_reported(reported[0], basis.percent)
            of = f"{reported[0]} charts reported for " + ", ".join(
                f"{r['period_start'].isoformat()} to {r['period_end'].isoformat()}" for r in reported[1])
        else:
            sample_basis, charts = "patient_volume", rule.sample_charts(monthly, basis.percent)
            of = f"about {monthly} patients a month"
        oversight.open_review(self.engine, review_id, req.clinic_key, req.physician_npi, req.cycle, basis.percent,
                              min(opened, req.due_at), req.due_at, sample_charts=charts, sample_basis=sample_basis)
        # the oversight's Timing sets when the annual protocol review opens (the sweep reads it per clinic)
        oversight.set_protocol_review_every(self.engine, req.clinic_key, req.protocol_review_every)
        audit.audit(self.engine, wf, "oversight", "chart_review_opened",
                   detail={"cycle": req.cycle, "sample_percent": basis.percent, "sample_charts": charts,
                           "sample_basis": sample_basis, "cycle_days": [first.isoformat(), last.isoformat()],
                           "reported_charts": reported[0] if reported else None,
                           "reported_periods": [[r["period_start"].isoformat(), r["period_end"].isoformat()]
                                                for r in reported[1]] if reported else [],
                           "monthly_patients": monthly, "due": req.due_at.isoformat(),
                           "basis": basis.model_dump(exclude={"percent"})},
                   idem_key=f"{wf}:chart-review:{req.cycle}")
        why = "; ".join(f"{st} {r['percent']}% every {r['cadence_days']} days ({r['basis']})"
                        for st, r in basis.states.items())
        why = f"Each state's own requirement: {why}; the strictest applies to the clinic.\n" if why else ""
        self._onb._mail(Notice(
            workflow_id=wf, key=f"chart-review-{req.cycle}", to_role="physician", to_id=req.physician_npi,
            subject=f"Chart review {req.cycle} for clinic {req.clinic_key}",
            body=(f"{why}Please review {charts} charts ({basis.percent}% of {of}, at "
                  f"least {rule.min_sample_charts}) by {req.due_at.date().isoformat()}.\n\n"
                  "Record the charts reviewed, the deficiencies and your notes here:\n"
                  f"{links.review_url(self._onb.settings, req.clinic_key, review_id, req.physician_npi, req.due_at)}\n"
                  f"(or: mdco reviews submit {review_id} --npi {req.physician_npi} --charts N "
                  "--deficiencies K [--notes TEXT])\n")))

    def chart_review_basis(self, clinic_key: str, planned_percent: int) -> ReviewBasis:
        """Each clinic state's own chart-review requirement from the launched plan, and the strictest."""
        launched = oversight.launched_onboarding(self.engine, clinic_key) or {}
        plan_states = (launched.get("plan") or {}).get("states") or {}
        clinic = onboardings.get_clinic(self.engine, clinic_key) or {}
        cadence = ((launched.get("plan") or {}).get("chart_review") or {}).get("cadence_days") or 365
        own = {st: (plan_states.get(st) or {}).get("chart_review") for st in clinic.get("states") or plan_states}
        return review_basis({st: r for st, r in own.items() if r}, planned_percent, cadence)

    # ------------------------------------------------------------------ the daily sweep
    @activity.defn(name="compliance_sweep")
    def compliance_sweep(self, req: SweepRequest) -> SweepSummary:
        """The sweep at the activity's start time (the server's clock: the same as the wall clock in
        production, the skipped clock in time-skipping tests), for ``req.as_of`` or that day."""
        return self.sweep(req.as_of, activity.info().started_time)

    def sweep(self, as_of: date | None = None, now: datetime | None = None) -> SweepSummary:
        """One pass over every live clinic; safe to repeat (a second pass the same day sends nothing)."""
        now = now or now_utc()
        today = as_of or now.date()
        summary = SweepSummary(as_of=today)
        clinics = oversight.live_clinics(self.engine)
        summary.clinics = len(clinics)
        creds, by_clinic = self.credentials(clinics, today, fill_defaults=True)
        summary.credentials = len(creds)
        sent = oversight.sent_notices(self.engine, list(creds))
        states_of = {c["key"]: c["states"] for c in clinics}
        for key, cred in sorted(creds.items()):
            self._heartbeat(key)
            step = renewals.due_step(cred, today, sent)
            if step is None:
                continue
            served = sorted(by_clinic[key])
            self._send_renewal(cred, step, served, today)
            oversight.record_notice(self.engine, cred, step, served, at=now)
            summary.notices += 1
            for clinic in served:
                states = renewals.suspended_states(cred, states_of[clinic]) if step == LAPSED else []
                newly = [s for s in states if oversight.suspend(
                    self.engine, clinic, s, cred.key, f"{cred.credential} expired {cred.expires_on}", now)]
                if newly:
                    summary.suspended += [f"{clinic}:{s}" for s in newly]
                    self._tell_suspension(clinic, newly, f"{cred.credential.replace('_', ' ')} expired on "
                                                         f"{cred.expires_on.isoformat()}", f"{cred.key}:{today}")
                pharmacies = self._suspend_pharmacy(cred, clinic, states_of[clinic], now) if step == LAPSED else []
                summary.pharmacies_suspended += [f"{clinic}:{p}" for p in pharmacies]
                summary.alerts.append(ComplianceAlert(
                    clinic_key=clinic, kind="lapse" if step == LAPSED else "renewal_notice", credential_key=cred.key,
                    step=str(step), suspended_states=newly, suspended_pharmacies=pharmacies, at=now))
        self._lift_renewed_pharmacies(creds, today, now)
        self._rescreen(clinics, today, now, summary)
        self._escalate_reviews(now, summary)
        self._escalate_actions(now, summary)
        self._protocol_reviews(clinics, now, summary)
        self._escalate_events(now, summary)
        log.info("compliance sweep %s: %d clinics, %d credentials, %d notices, %d suspended", today, summary.clinics,
                 summary.credentials, summary.notices, len(summary.suspended))
        return summary

    def credentials(self, clinics: list[dict], today: date,
                    fill_defaults: bool = False) -> tuple[dict[str, Credential], dict[str, set[str]]]:
        """Every dated credential the live ``clinics`` depend on, by key, and the clinics each serves."""
        return dated_credentials(self.engine, clinics, fill_defaults=fill_defaults)

    def renewals(self, today: date, clinic_key: str | None = None) -> list[renewals.RenewalView]:
        """Every tracked credential of the live clinics (or of ``clinic_key``), soonest expiry first."""
        clinics = [c for c in oversight.live_clinics(self.engine) if clinic_key is None or c["key"] == clinic_key]
        creds, by_clinic = self.credentials(clinics, today)
        sent = oversight.sent_notices(self.engine, list(creds))
        views = [renewals.renewal_view(c, today, sent, by_clinic[k]) for k, c in creds.items()]
        return sorted(views, key=lambda v: (v.expires_on, v.holder_id, v.credential, v.state))

    def oversight_status(self, clinic_key: str, now: datetime | None = None) -> dict:
        """``mdco oversight status --json`` (CONTRACT.md), read from the store."""
        now = now or now_utc()
        clinic = onboardings.get_clinic(self.engine, clinic_key) or {}
        suspended = [s["state"] for s in oversight.suspensions(self.engine, clinic_key)]
        replacing = oversight.running_replacement(self.engine, clinic_key)
        state = ("offboarded" if clinic.get("status") == "offboarded" else "replacing" if replacing
                 else "suspended" if suspended else "active")
        actions: dict[str, list[dict]] = defaultdict(list)
        for a in oversight.corrective_actions(self.engine, clinic_key):
            actions[a["review_id"]].append({**{k: a[k] for k in ("action_id", "deficiencies", "opened_at", "due_at",
                                                                 "closed_at", "closed_by", "close_notes",
                                                                 "escalated")},
                                            "status": oversight.corrective_action_status(a, now)})
        reviews = [{**{k: r[k] for k in ("review_id", "cycle", "due_at", "sample_percent", "sample_charts",
                                          "charts_reviewed", "deficiencies", "notes", "submitted_at", "escalated")},
                    "sample_basis": r["sample_basis"] or "patient_volume",  # NULL: opened before it was kept
                    "status": oversight.review_status(r, now), "corrective_actions": actions[r["review_id"]]}
                   for r in oversight.list_reviews(self.engine, clinic_key)]
        events = [{k: e[k] for k in ("event_id", "severity", "status", "reported_at", "ack_due_at", "acked_at")}
                  for e in oversight.list_events(self.engine, clinic_key)]
        protocol_reviews = [{**{k: p[k] for k in ("review_id", "sha256s", "opened_at", "due_at", "approved_at",
                                                  "approved_by", "escalated")},
                             "status": "approved" if p["status"] == "approved" else
                             "overdue" if now > p["due_at"] else "open"}
                            for p in oversight.protocol_reviews(self.engine, clinic_key)]
        views = self.renewals(now.date(), clinic_key) if clinic.get("status") == "active" else []
        return {"workflow_id": oversight_id_for(clinic_key), "clinic_key": clinic_key, "status": state,
                "physician_npi": clinic.get("physician_npi"), "suspended_states": suspended,
                "suspended_pharmacies": [{k: p[k] for k in ("pharmacy_id", "state", "since", "reason")}
                                         for p in oversight.pharmacy_suspensions(self.engine, clinic_key)],
                "replacement_workflow_id": replacing, "chart_reviews": reviews, "adverse_events": events,
                "protocol_reviews": protocol_reviews,
                "renewals": [v.model_dump(mode="json", exclude={"clinics"}) for v in views]}

    def _send_renewal(self, cred: Credential, step: renewals.Step, clinics: list[str], today: date) -> None:
        what = cred.credential.replace("_", " ") + (f" ({cred.state})" if cred.state else "") + \
            (f" {cred.label}" if cred.label else "")
        when = (f"expired on {cred.expires_on.isoformat()}" if step == LAPSED
                else f"expires on {cred.expires_on.isoformat()} ({renewals.days_left(cred.expires_on, today)} days)")
        subject = f"Renewal {'lapsed' if step == LAPSED else 'due'}: {what} {when}"
        body = (f"{what} {when}. Clinics relying on it: {', '.join(clinics)}.\n"
                "Send the renewed document to ops; a re-import with the new expiry date stops these notices.\n")
        key = renewals.notice_key(cred, step)
        holder = cred.holder_kind
        if holder == "physician":
            self._onb._mail(Notice(workflow_id=SWEEP_WORKFLOW, key=f"{key}:holder", to_role="physician",
                                   to_id=cred.holder_id, subject=subject, body=body))
        elif holder == "pharmacy":
            self._onb._mail(Notice(workflow_id=SWEEP_WORKFLOW, key=f"{key}:holder", to_role="pharmacy",
                                   to_id=cred.holder_id, subject=subject, body=body))
        elif holder == "agreement":  # the agreement's parties: the director and the clinic
            for clinic in clinics:
                npi = (onboardings.get_clinic(self.engine, clinic) or {}).get("physician_npi")
                if npi:
                    self._onb._mail(Notice(workflow_id=oversight_id_for(clinic), key=f"{key}:physician",
                                           to_role="physician", to_id=npi, subject=subject, body=body))
        self._onb._mail(Notice(workflow_id=SWEEP_WORKFLOW, key=f"{key}:ops", to_role="ops", subject=subject, body=body))
        # the clinic: near the expiry and at the lapse; a midlevel's or an agreement's holder side always
        if renewals.tells_clinic(step) or holder in ("midlevel", "agreement"):
            for clinic in clinics:
                self._onb._mail(Notice(workflow_id=oversight_id_for(clinic), key=f"{key}:clinic", to_role="clinic",
                                       to_id=clinic, subject=subject, body=body))
        for clinic in clinics:
            audit.audit(self.engine, oversight_id_for(clinic), "compliance-sweep", "renewal_notice",
                       detail={"credential": cred.credential, "credential_key": cred.key, "state": cred.state,
                               "expires_on": cred.expires_on.isoformat(), "step": str(step)},
                       idem_key=f"{oversight_id_for(clinic)}:{key}")
        log.info("renewal notice %s step %s for %d clinics", cred.credential, step, len(clinics))

    def _tell_suspension(self, clinic_key: str, states: list[str], why: str, key: str) -> None:
        """The clinic, its director, its pharmacies and ops hear that prescribing oversight is suspended."""
        wf = oversight_id_for(clinic_key)
        clinic = onboardings.get_clinic(self.engine, clinic_key) or {}
        subject = f"Prescribing oversight suspended in {', '.join(states)}: {clinic.get('name', clinic_key)}"
        body = (f"Prescribing oversight for {clinic.get('name', clinic_key)} is suspended in {', '.join(states)} "
                f"from now: {why}. No new prescriptions under this supervision in those states until it is lifted; "
                "ops arrange a replacement director.\n")
        audit.audit(self.engine, wf, "compliance-sweep", "oversight_suspended", reason=why,
                   detail={"states": states}, idem_key=f"{wf}:suspended:{key}:{','.join(states)}")
        notices = [("clinic", clinic_key), ("ops", "")]
        if clinic.get("physician_npi"):
            notices.append(("physician", clinic["physician_npi"]))
        launched = oversight.launched_onboarding(self.engine, clinic_key)
        pharmacy_ids = [a.pharmacy_id for a in onboardings.list_pharmacy_assignments(
            self.engine, launched["workflow_id"])] if launched else []
        if pharmacy_ids:
            notices.append(("pharmacies", ",".join(pharmacy_ids)))
        for role, to_id in notices:
            self._onb._mail(Notice(workflow_id=wf, key=f"suspended:{key}:{','.join(states)}:{role}", to_role=role,
                                   to_id=to_id, subject=subject, body=body))
        log.info("%s: oversight suspended in %s", wf, ",".join(states))

    def _suspend_pharmacy(self, cred: Credential, clinic_key: str, clinic_states: list[str], now: datetime) -> list[str]:
        """A pharmacy licence lapsed: that pharmacy stops serving the clinic in the licence's state (policy
        ``pharmacy``); the clinic, its director, the pharmacy and ops are told. ``pharmacy_id:state`` newly
        suspended."""
        why = f"its {cred.state} pharmacy licence expired on {cred.expires_on.isoformat()}"
        newly = [st for st in renewals.suspended_pharmacy_states(cred, clinic_states) if oversight.suspend_pharmacy(
            self.engine, clinic_key, cred.holder_id, st, cred.key, f"pharmacy licence expired {cred.expires_on}", now)]
        if newly:
            self._tell_pharmacy_change(clinic_key, cred.holder_id, newly, f"suspended:{cred.key}:{cred.expires_on}",
                                       "suspended", f"{why}. Send no prescriptions for patients in "
                                       f"{', '.join(newly)} to it until ops confirm the renewed licence")
        return [f"{cred.holder_id}:{st}" for st in newly]

    def _lift_renewed_pharmacies(self, creds: dict[str, Credential], today: date, now: datetime) -> None:
        """A suspended pharmacy whose licence was re-imported with a later expiry serves the clinic again."""
        for row in oversight.pharmacy_suspensions(self.engine):
            cred = creds.get(row["cause"])
            if cred is None or renewals.step_on(cred.expires_on, today) == LAPSED:
                continue
            if oversight.lift_pharmacy(self.engine, row["clinic_key"], row["pharmacy_id"], row["state"], now):
                self._tell_pharmacy_change(row["clinic_key"], row["pharmacy_id"], [row["state"]],
                                           f"lifted:{cred.key}:{cred.expires_on}", "reinstated",
                                           f"its {row['state']} licence now runs to {cred.expires_on.isoformat()}")

    def _tell_pharmacy_change(self, clinic_key: str, pharmacy_id: str, states: list[str], key: str, what: str,
                              why: str) -> None:
        """Clinic, director, the pharmacy and ops hear that a pharmacy is suspended or reinstated."""
        wf = oversight_id_for(clinic_key)
        clinic = onboardings.get_clinic(self.engine, clinic_key) or {}
        name = clinic.get("name", clinic_key)
        subject = f"Pharmacy {pharmacy_id} {what} for {name} in {', '.join(states)}"
        body = f"Pharmacy {pharmacy_id} is {what} for {name} in {', '.join(states)}: {why}.\n"
        audit.audit(self.engine, wf, "compliance-sweep", f"pharmacy_{what}", reason=why,
                   detail={"pharmacy_id": pharmacy_id, "states": states}, idem_key=f"{wf}:pharmacy:{key}")
        notices = [("clinic", clinic_key), ("ops", ""), ("pharmacy", pharmacy_id)]
        if clinic.get("physician_npi"):
            notices.append(("physician", clinic["physician_npi"]))
        for role, to_id in notices:
            self._onb._mail(Notice(workflow_id=wf, key=f"pharmacy-{key}:{role}", to_role=role, to_id=to_id,
                                   subject=subject, body=body))
        log.info("%s: pharmacy %s %s in %s", wf, pharmacy_id, what, ",".join(states))

    def _rescreen(self, clinics: list[dict], today: date, now: datetime, summary: SweepSummary) -> None:
        """Re-screen the roster against the last imported LEIE list; a live clinic's excluded director
        suspends every state of the clinic. Each clinic's screen is recorded (the audit packet lists them)."""
        summary.leie_entries = exclusions.exclusion_count(self.engine)
        if not summary.leie_entries:
            return
        exclusions.rescreen(self.engine, today)
        for clinic in clinics:
            npi = clinic.get("physician_npi")
            if not npi:
                continue
            p = roster.get_physician(self.engine, npi)
            if p is None:
                continue
            wf = oversight_id_for(clinic["key"])
            audit.audit(self.engine, wf, "compliance-sweep", "exclusion_screen",
                       detail={"npi": npi, "excluded": p.excluded, "review": p.exclusion_review,
                               "list_entries": summary.leie_entries, "as_of": today.isoformat()},
                       idem_key=f"{wf}:exclusion-screen:{npi}:{today.isoformat()}")
            if not p.excluded:
                continue
            summary.excluded_npis.append(npi)
            cause = f"exclusion:{npi}"
            newly = [s for s in sorted(clinic["states"]) if oversight.suspend(
                self.engine, clinic["key"], s, cause, "director on the OIG LEIE exclusion list", now)]
            if newly:
                summary.suspended += [f"{clinic['key']}:{s}" for s in newly]
                self._tell_suspension(clinic["key"], newly, "the medical director is on the OIG LEIE exclusion list",
                                      f"{cause}:{today}")
                summary.alerts.append(ComplianceAlert(clinic_key=clinic["key"], kind="exclusion", credential_key=cause,
                                                      suspended_states=newly, at=now))
        summary.excluded_npis = sorted(set(summary.excluded_npis))

    def _escalate_reviews(self, now: datetime, summary: SweepSummary) -> None:
        """An overdue review reminds the director on the policy's days past due, then goes to ops."""
        rule = renewals.policy().chart_review
        for review in oversight.overdue_reviews(self.engine, now):
            level = rule.review_escalation((now - review["due_at"]).days, review["escalated"])
            if level is None:
                continue
            again = "" if level in ("director", "ops") else f"{level}-"  # a later reminder: its own notice
            wf = oversight_id_for(review["clinic_key"])
            subject = f"Chart review {review['review_id']} is overdue (due {review['due_at'].date().isoformat()})"
            body = (f"The chart review {review['review_id']} of clinic {review['clinic_key']} was due "
                    f"{review['due_at'].isoformat()} and has not been submitted.\n")
            if level == "ops":
                self._onb._mail(Notice(workflow_id=wf, key=f"review-overdue-ops-{review['review_id']}", to_role="ops",
                                       subject=subject, body=body))
            else:  # the director's reminder carries the review's answer link again
                link = links.review_url(self._onb.settings, review["clinic_key"], review["review_id"],
                                        review["physician_npi"], review["due_at"])
                self._onb._mail(Notice(workflow_id=wf, key=f"review-overdue-{again}{review['review_id']}",
                                       to_role="physician", to_id=review["physician_npi"], subject=subject,
                                       body=f"{body}\nRecord it here:\n{link}\n"))
            oversight.mark_review_escalated(self.engine, review["review_id"], level)
            audit.audit(self.engine, wf, "compliance-sweep", f"chart_review_escalated_{level}",
                       detail={"review_id": review["review_id"]}, idem_key=f"{wf}:{review['review_id']}:esc:{level}")
            summary.reviews_escalated += 1

    def _escalate_actions(self, now: datetime, summary: SweepSummary) -> None:
        """An open corrective action past its due date reminds the director on the policy's days, then ops."""
        summary.actions_escalated += self._escalate_overdue(
            oversight.overdue_actions(self.engine, now), now, renewals.policy().chart_review.action_escalation,
            "action_id", "corrective action", "action", oversight.mark_action_escalated,
            lambda a: (f"({a['deficiencies']} deficient charts in review {a['review_id']})",
                       f"Close it with what was done: mdco reviews close-action {a['action_id']} "
                       f"--npi {a['physician_npi']} --notes TEXT"))

    def _escalate_overdue(self, rows: list[dict], now: datetime, level_of, id_key: str, what: str, slug: str,
                          mark, describe) -> int:
        """Remind the director of each overdue row, or tell ops, at the step ``level_of`` says (each step
        once); ``describe(row)`` gives what the row is about and what the director should do."""
        done = 0
        for row in rows:
            level = level_of((now - row["due_at"]).days, row["escalated"] or "")
            if level is None:
                continue
            wf, rid = oversight_id_for(row["clinic_key"]), row[id_key]
            about, todo = describe(row)
            subject = f"{what.capitalize()} {rid} is overdue (due {row['due_at'].date().isoformat()})"
            body = (f"The {what} {rid} of clinic {row['clinic_key']} {about} was due {row['due_at'].isoformat()} "
                    "and is still open.\n")
            if level == "ops":
                notice = Notice(workflow_id=wf, key=f"{slug}-overdue-ops-{rid}", to_role="ops", subject=subject,
                                body=body)
            else:
                notice = Notice(workflow_id=wf, key=f"{slug}-overdue-{level}-{rid}", to_role="physician",
                                to_id=row["physician_npi"], subject=subject, body=f"{body}{todo}\n")
            self._onb._mail(notice)
            mark(self.engine, rid, level)
            audit.audit(self.engine, wf, "compliance-sweep", f"{what.replace(' ', '_')}_escalated",
                       detail={id_key: rid, "level": level}, idem_key=f"{wf}:{rid}:esc:{level}")
            done += 1
        return done

    # ------------------------------------------------------------------ the annual protocol review
    def _protocol_reviews(self, clinics: list[dict], now: datetime, summary: SweepSummary) -> None:
        """An interval after the last approval of a live clinic's protocols (its oversight's
        ``Timing.protocol_review_every``, else the policy's year), open a review: the director re-approves
        the texts in force, bound to their SHA-256s; overdue ones escalate."""
        rule = renewals.policy().protocol_review
        for clinic in clinics:
            launched = oversight.launched_onboarding(self.engine, clinic["key"])
            director = clinic.get("physician_npi")
            docs = onboardings.protocol_documents(self.engine, launched["workflow_id"]) if launched else []
            reviews = oversight.protocol_reviews(self.engine, clinic["key"])
            if not docs or not director or any(r["status"] == "open" for r in reviews):
                continue
            approvals = [r["approved_at"] for r in reviews if r["approved_at"]] or \
                [d["approved_at"] for d in docs if d["approved_at"]] or [launched["launched_at"] or now]
            last = max(approvals)
            opens = rule.opens_at(last, oversight.protocol_review_every(clinic))
            if now < opens:
                continue
            review_id = f"{clinic['key']}-pr-{len(reviews) + 1}"
            due = now + timedelta(days=rule.due_days)
            sha256s = sorted(d["sha256"] for d in docs)
            if not oversight.open_protocol_review(self.engine, review_id, clinic["key"], launched["workflow_id"],
                                                  director, sha256s, now, due):
                continue
            wf = oversight_id_for(clinic["key"])
            audit.audit(self.engine, wf, "compliance-sweep", "protocol_review_opened",
                       detail={"review_id": review_id, "sha256s": sha256s, "due": due.isoformat(),
                               "last_approved": last.isoformat(), "interval_days": (opens - last) / timedelta(days=1)},
                       idem_key=f"{wf}:{review_id}:opened")
            listing = "".join(f"  {d['service']} {d['template_version']} sha256 {d['sha256']}\n" for d in docs)
            self._onb._mail(Notice(
                workflow_id=wf, key=f"protocol-review-{review_id}", to_role="physician", to_id=director,
                subject=f"Annual protocol review for clinic {clinic['key']}: re-approve by {due.date().isoformat()}",
                body=(f"The protocols of clinic {clinic['key']} were last approved on {last.date().isoformat()}: "
                      f"their annual review is due. Read them "
                      f"(mdco protocols show {launched['workflow_id']}) and re-approve these texts:\n{listing}"
                      f"mdco oversight reapprove-protocols {clinic['key']} --npi {director}\n")))
            summary.protocol_reviews_opened += 1
        summary.protocol_reviews_escalated += self._escalate_overdue(
            oversight.overdue_protocol_reviews(self.engine, now), now, rule.escalation, "review_id",
            "protocol review", "protocol-review", oversight.mark_protocol_review_escalated,
            lambda r: ("(the annual re-approval of its protocols)",
                       f"Re-approve: mdco oversight reapprove-protocols {r['clinic_key']} --npi {r['physician_npi']}"))

    def reapprove_protocols(self, clinic_key: str, npi: str, sha256s: list[str] | None, at: datetime) -> dict:
        """The director re-approves the clinic's open protocol review (``mdco oversight reapprove-protocols``),
        bound to ``sha256s`` (default: the ones the review asks), and it is audited. Refused (``Refused``,
        ``NotFound``; nothing changed): not the director, other SHA-256s, no review opened."""
        reviews = oversight.protocol_reviews(self.engine, clinic_key)
        bound = list(sha256s) if sha256s else (reviews[-1]["sha256s"] if reviews else [])
        row = oversight.reapprove_protocols(self.engine, clinic_key, npi, bound, at)
        wf = oversight_id_for(clinic_key)
        audit.audit(self.engine, wf, f"physician:{npi}", "protocols_reapproved", at=row["approved_at"],
                    detail={"review_id": row["review_id"], "sha256s": row["sha256s"]},
                    idem_key=f"{wf}:{row['review_id']}:approved")
        return row

    def _escalate_events(self, now: datetime, summary: SweepSummary) -> None:
        """A back-stop for ``AdverseEventWorkflow``: any event past its deadline still open goes to ops."""
        for clinic in oversight.live_clinics(self.engine):
            for event in oversight.list_events(self.engine, clinic["key"]):
                if event["status"] == "open" and event["ack_due_at"] < now:
                    summary.events_escalated += self.escalate(event["event_id"], now)

    # ------------------------------------------------------------------ adverse events
    def report_event(self, clinic_key: str, severity: str, summary: str, at: datetime, due: datetime) -> dict:
        """A clinic reports an adverse event (``mdco events report``): stored and audited, the director asked
        by e-mail (with the answer link) to acknowledge it by ``due``, and a serious or sentinel one gets its
        draft MedWatch 3500 summary; the event row, with ``medwatch`` (the draft's row, None for minor).
        Refused (``Refused``, ``NotFound``, ``ValueError``; nothing stored): a bad severity or summary."""
        from activities.medwatch import draft_medwatch

        clinic = onboardings.get_clinic(self.engine, clinic_key) or {}
        event_id = f"{clinic_key}-ae-{uuid.uuid4().hex[:8]}"
        row = oversight.report_event(self.engine, event_id, clinic_key, severity, summary.strip(), at, due)
        wf, npi = oversight_id_for(clinic_key), clinic.get("physician_npi") or ""
        audit.audit(self.engine, wf, f"clinic:{clinic_key}", "adverse_event_reported",
                    detail={"event_id": event_id, "severity": severity, "ack_due_at": due.isoformat()},
                    idem_key=f"{wf}:event:{event_id}")
        self._onb._mail(Notice(
            workflow_id=wf, key=f"event-{event_id}", to_role="physician", to_id=npi,
            subject=f"Adverse event ({severity}) at clinic {clinic_key}: acknowledge by {due.isoformat()}",
            body=(f"{summary.strip()}\n\nAcknowledge it here:\n"
                  f"{links.event_url(self._onb.settings, clinic_key, event_id, npi, due)}"
                  f"\n(or: mdco events ack {event_id} --npi {npi} [--notes TEXT])\n")))
        drafted = draft_medwatch(self.engine, self._onb.settings.documents_dir, event_id)  # serious/sentinel only
        return {**row, "medwatch": drafted}

    @activity.defn(name="escalate_adverse_event")
    def escalate_adverse_event(self, watch: AdverseEventWatch) -> bool:
        return self.escalate(watch.event_id, activity.info().started_time)

    def escalate(self, event_id: str, at: datetime) -> bool:
        """Tell ops about an event not acknowledged in time; True when this call escalated it."""
        event = oversight.get_event(self.engine, event_id)
        if event is None or event["status"] != "open":
            return False
        wf = oversight_id_for(event["clinic_key"])
        self._onb._mail(Notice(
            workflow_id=wf, key=f"event-escalated-{event_id}", to_role="ops",
            subject=f"Adverse event {event_id} ({event['severity']}) not acknowledged in time",
            body=(f"Clinic {event['clinic_key']} reported a {event['severity']} adverse event at "
                  f"{event['reported_at'].isoformat()}; its medical director had until {event['ack_due_at'].isoformat()} "
                  "to acknowledge it and has not.\n")))
        escalated = oversight.escalate_event(self.engine, event_id, at)
        audit.audit(self.engine, wf, "oversight", "adverse_event_escalated", detail={"event_id": event_id},
                   idem_key=f"{wf}:event:{event_id}:escalated")
        return escalated

    # ------------------------------------------------------------------ offboarding
    @activity.defn(name="offboard_clinic")
    def offboard_clinic(self, req: OffboardRecord) -> None:
        """The engagement ends: the clinic leaves oversight, the director's capacity is released, the
        agreements are marked terminated (audit, with the date), and clinic, director, pharmacies and ops
        are told. Idempotent."""
        wf = oversight_id_for(req.clinic_key)
        clinic = onboardings.get_clinic(self.engine, req.clinic_key) or {}
        if clinic:
            oversight.mark_offboarded(self.engine, req.clinic_key)
        launched = oversight.launched_onboarding(self.engine, req.clinic_key)
        released, kinds, pharmacy_ids = False, [], []
        if launched is not None:
            released = roster.release_physician(self.engine, launched["workflow_id"])
            kinds = agreements.terminate_agreements(self.engine, launched["workflow_id"], req.at)
            pharmacy_ids = [a.pharmacy_id for a in onboardings.list_pharmacy_assignments(
                self.engine, launched["workflow_id"])]
        audit.audit(self.engine, wf, "ops", "offboarded", reason=req.reason, at=req.at,
                   detail={"npi": req.physician_npi, "capacity_released": released, "agreements_terminated": kinds,
                           "terminated_on": req.at.date().isoformat()},
                   idem_key=f"{wf}:offboarded")
        name = clinic.get("name", req.clinic_key)
        subject = f"Engagement ended: {name}"
        body = (f"Medical-director oversight of {name} ends on {req.at.date().isoformat()}: {req.reason}.\n"
                f"Agreements terminated on that date: {', '.join(kinds) or 'none on file'}.\n")
        notices = [("ops", ""), ("physician", req.physician_npi)]
        if clinic:
            notices.append(("clinic", req.clinic_key))
        if pharmacy_ids:
            notices.append(("pharmacies", ",".join(pharmacy_ids)))
        for role, to_id in notices:
            self._onb._mail(Notice(workflow_id=wf, key=f"offboarded-{role}", to_role=role, to_id=to_id,
                                   subject=subject, body=body))
        log.info("%s: offboarded (capacity released: %s)", wf, released)

    @staticmethod
    def _heartbeat(detail: str) -> None:
        if activity.in_activity():
            activity.heartbeat(detail)
