"""The API's ``mdco_*`` business metrics, in Prometheus text.

Counters and the time-to-match histogram are derived from the store (``onboardings`` rows and the
``notifications`` the workflows sent), not counted in this process, so every API replica reports
the same numbers and they survive restarts. Open onboardings by stage and by SLA status are gauges
read from Temporal visibility (running ``OnboardingWorkflow`` executions). The oversight gauges (renewal
notices due by ladder step, overdue chart reviews) come from the oversight store, refreshed every
``OVERSIGHT_CACHE_S``. One snapshot of both is
cached for ``CACHE_S`` seconds, so frequent scrapes cost one query each per window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Awaitable, Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import Engine, func, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain import renewals
from domain.codes import SlaStatus, Stage
from store import tables as t
from store.common import sql_table
from store.db import run
from mdco_temporal.repair import STUCK_QUERY
from workflows import search_attributes as sa

log = logging.getLogger("mdco.metrics")

CACHE_S = 5.0
#: The oversight gauges walk every live clinic's credentials; they change with the day, not the second.
OVERSIGHT_CACHE_S = 60.0
#: minutes; the SLA is 12-24 h, the demo profile compresses it to seconds
TIME_TO_MATCH_BUCKETS = (1, 5, 15, 30, 60, 120, 240, 480, 720, 960, 1440, 2160, 2880)
OPEN_STAGES = tuple(s.value for s in Stage if s not in (Stage.launched, Stage.cancelled))

#: ``mdco_*`` series the API serves at /metrics (as exposed, with ``_total``/``_bucket`` suffixes).
API_METRICS = ("mdco_onboardings_started_total", "mdco_onboardings_launched_total",
               "mdco_onboardings_cancelled_total", "mdco_time_to_match_minutes_bucket",
               "mdco_time_to_match_minutes_sum", "mdco_time_to_match_minutes_count",
               "mdco_sla_breaches_total", "mdco_sla_at_risk_total", "mdco_onboardings_open",
               "mdco_onboardings_open_by_sla", "mdco_visibility_up", "mdco_workflows_stuck", "mdco_renewal_notices_due",
               "mdco_chart_reviews_overdue", "mdco_api_requests_total", "mdco_api_request_duration_seconds_bucket")


@dataclass
class StoreCounts:
    started: int = 0
    launched: int = 0
    cancelled: int = 0
    sla_breaches: int = 0
    sla_at_risk: int = 0
    minutes_to_match: list[float] = field(default_factory=list)


@dataclass
class OversightCounts:
    notices_due: dict[str, int] = field(default_factory=dict)  # ladder step -> notices due and not yet sent
    reviews_overdue: int = 0


#: The labels of ``mdco_renewal_notices_due``: every ladder step and the lapse.
def ladder_steps() -> list[str]:
    return [*(str(d) for d in renewals.policy().ladder.days), renewals.LAPSED]


def oversight_counts(engine: Engine, now: datetime | None = None) -> OversightCounts:
    """From the oversight store, as the compliance sweep sees it on ``now``'s date: per ladder step, the
    credentials of live clinics whose notice of that step is due and not yet sent (what the next sweep
    sends), and the chart reviews of live clinics past due and not submitted."""
    from activities.oversight import dated_credentials
    from store import oversight

    now = now or datetime.now(UTC)
    today = now.date()
    creds, _ = dated_credentials(engine, oversight.live_clinics(engine))
    sent = oversight.sent_notices(engine, list(creds))
    due = dict.fromkeys(ladder_steps(), 0)
    for cred in creds.values():
        step = renewals.due_step(cred, today, sent)
        if step is not None:
            due[str(step)] += 1
    return OversightCounts(notices_due=due, reviews_overdue=oversight.count_overdue_reviews(engine, now))


def store_counts(engine: Engine) -> StoreCounts:
    """Everything the counters and the histogram need, in one read transaction."""
    ob, no = sql_table(t.Onboarding), sql_table(t.Notification)

    def work(s) -> StoreCounts:
        def count(table, *where) -> int:
            return s.exec(select(func.count()).select_from(table).where(*where)).scalar_one()

        pairs = s.exec(select(ob.c.started_at, ob.c.matched_at)
                       .where(ob.c.started_at.is_not(None), ob.c.matched_at.is_not(None))).all()
        return StoreCounts(
            started=count(ob, ob.c.started_at.is_not(None)),
            launched=count(ob, ob.c.launched_at.is_not(None)),
            cancelled=count(ob, ob.c.cancelled_at.is_not(None)),
            # the workflow's SLA clock mails ops once per onboarding and level (key <wf>:sla-<level>)
            sla_breaches=count(no, no.c.key.like(f"%:sla-{SlaStatus.breached.value}")),
            sla_at_risk=count(no, no.c.key.like(f"%:sla-{SlaStatus.at_risk.value}")),
            # the same measure as the workflow status's time_to_match_minutes
            minutes_to_match=[max((m - st).total_seconds() / 60, 0.0) for st, m in pairs])

    return run(engine, work, write=False)


async def open_onboardings(client: Client) -> tuple[dict[str, int], dict[str, int]]:
    """Running onboardings counted by stage and by SLA status (Temporal visibility)."""
    from api.service import build_list_query

    by_stage = dict.fromkeys(OPEN_STAGES, 0)
    by_sla = dict.fromkeys((s.value for s in SlaStatus), 0)
    async for wf in client.list_workflows(f"{build_list_query()} AND ExecutionStatus = 'Running'"):
        attrs = wf.typed_search_attributes
        stage, sla = attrs.get(sa.STAGE), attrs.get(sa.SLA_STATUS)
        if stage:
            by_stage[stage] = by_stage.get(stage, 0) + 1
        if sla:
            by_sla[sla] = by_sla.get(sla, 0) + 1
    return by_stage, by_sla


async def stuck_count(client: Client) -> int | None:
    """Running workflows whose task keeps failing, or None on a server without ``TemporalReportedProblems``
    (before 1.28): then the gauge is left out rather than reported as 0."""
    try:
        return (await client.count_workflows(STUCK_QUERY)).count
    except RPCError as err:
        if err.status == RPCStatusCode.INVALID_ARGUMENT:
            return None
        raise


def _histogram(values: list[float]) -> HistogramMetricFamily:
    buckets, running = [], 0
    ordered = sorted(values)
    i = 0
    for bound in TIME_TO_MATCH_BUCKETS:
        while i < len(ordered) and ordered[i] <= bound:
            i += 1
        running = i
        buckets.append((str(float(bound)), running))
    buckets.append(("+Inf", len(ordered)))
    return HistogramMetricFamily("mdco_time_to_match_minutes",
                                 "minutes from an onboarding's start to its physician placement", buckets=buckets,
                                 sum_value=sum(ordered))


class BusinessMetrics:
    """Snapshots of the store and of visibility, rendered as Prometheus text (cached ``CACHE_S``)."""

    def __init__(self, engine: Callable[[], Engine], client: Callable[[], Awaitable[Client]],
                 extra: CollectorRegistry | None = None, cache_s: float = CACHE_S):
        self._engine, self._client, self._extra, self._cache_s = engine, client, extra, cache_s
        self._lock = asyncio.Lock()
        self._at = float("-inf")
        self._counts = StoreCounts()
        self._open: tuple[dict[str, int], dict[str, int]] | None = None
        self._visibility_up = 0
        self._stuck: int | None = None
        self._oversight = OversightCounts(notices_due=dict.fromkeys(ladder_steps(), 0))
        self._oversight_at = float("-inf")

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._at < self._cache_s:
                return
            self._counts = await asyncio.to_thread(store_counts, self._engine())
            if time.monotonic() - self._oversight_at >= max(self._cache_s, OVERSIGHT_CACHE_S):
                self._oversight = await asyncio.to_thread(oversight_counts, self._engine())
                self._oversight_at = time.monotonic()
            try:
                client = await self._client()
                self._open = await asyncio.wait_for(open_onboardings(client), 10)
                self._visibility_up = 1
                self._stuck = await asyncio.wait_for(stuck_count(client), 10)
            except Exception as exc:  # noqa: BLE001 - Temporal down: keep the last counts, say so
                log.warning("visibility query for metrics failed: %s", type(exc).__name__)
                self._visibility_up = 0
            self._at = time.monotonic()

    def families(self) -> list:
        c = self._counts
        out = []
        for name, help_, value in (
                ("mdco_onboardings_started", "onboardings started (store)", c.started),
                ("mdco_onboardings_launched", "onboardings that reached launch (store)", c.launched),
                ("mdco_onboardings_cancelled", "onboardings cancelled by ops (store)", c.cancelled),
                ("mdco_sla_breaches", "onboardings whose placement SLA was breached (ops notified)", c.sla_breaches),
                ("mdco_sla_at_risk", "onboardings whose placement SLA went at risk (ops notified)", c.sla_at_risk)):
            out.append(CounterMetricFamily(name, help_, value=value))
        out.append(_histogram(c.minutes_to_match))
        up = GaugeMetricFamily("mdco_visibility_up", "1 when the last Temporal visibility query for the open "
                                                     "onboardings succeeded")
        up.add_metric([], self._visibility_up)
        out.append(up)
        if self._stuck is not None:
            out.append(GaugeMetricFamily("mdco_workflows_stuck", "running workflows whose workflow task keeps failing "
                                         "(TemporalReportedProblems; `mdco repair` for a nondeterminism)",
                                         value=self._stuck))
        if self._open is not None:
            by_stage, by_sla = self._open
            stage = GaugeMetricFamily("mdco_onboardings_open", "running onboardings by stage", labels=["stage"])
            for k, v in sorted(by_stage.items()):
                stage.add_metric([k], v)
            sla = GaugeMetricFamily("mdco_onboardings_open_by_sla", "running onboardings by SLA status",
                                    labels=["sla_status"])
            for k, v in sorted(by_sla.items()):
                sla.add_metric([k], v)
            out += [stage, sla]
        due = GaugeMetricFamily("mdco_renewal_notices_due", "renewal notices of live clinics' credentials due "
                                "today and not yet sent, by ladder step (oversight store)", labels=["step"])
        for step, count in self._oversight.notices_due.items():
            due.add_metric([step], count)
        out.append(due)
        out.append(GaugeMetricFamily("mdco_chart_reviews_overdue", "chart reviews of live clinics past their due "
                                     "date and not submitted (oversight store)", value=self._oversight.reviews_overdue))
        return out

    async def render(self) -> bytes:
        await self._refresh()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(self.families()))
        text = generate_latest(registry)
        return text + (generate_latest(self._extra) if self._extra is not None else b"")


class _Families:
    def __init__(self, families: list):
        self._families = families

    def collect(self):
        return iter(self._families)
