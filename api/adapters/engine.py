"""The API's adapter to the KPI engine and the forecast, as plain data for the routes: the month to
date (per objective and subject the attainment so far, error budget left, burn rate and a
red/amber/green light), the cumulative budget burn per day (the dashboard's chart) with its forecast
band, and the period's forecast (P(meet), the 90% interval of final attainment, expected credit; the
open faults worth fixing first). Pure: takes terms and evidence; amounts stay in smallest units."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from oracle.core.calendar import iso_utc, zone
from oracle.core.credit import budget_allowed
from oracle.core.period import Period, periods
from oracle.core.terms import Terms
from oracle.engine.budget import TICKET_KPIS
from oracle.engine.forecast import ForecastParams, burn_chart, forecast_period
from oracle.engine.kpi import PeriodError, PeriodResult, SubjectResult, compute_period
from oracle.evidence.load import Evidence

__all__ = ["DEFAULT_SIMS", "HISTORY_S", "MAX_SIMS", "MIN_SIMS", "BeforeTerm", "PeriodError", "burn_bands",
           "burn_series", "forecast_view", "month_to_date", "period_as_of"]

GREEN, AMBER, RED = "green", "amber", "red"
_RANK = {GREEN: 0, AMBER: 1, RED: 2}

SEED = 0  # fixed: a request gives the same numbers every time, so cached answers stay true
DEFAULT_SIMS, MIN_SIMS, MAX_SIMS = 300, 50, 2000
HISTORY_DAYS = ForecastParams.history_days  # the fit window before as_of the evidence must cover
HISTORY_S = int(HISTORY_DAYS * 86_400)


class BeforeTerm(ValueError):
    """The instant asked for is before the term starts (nothing to measure yet)."""


def period_as_of(terms: Terms, as_of: int) -> tuple[Period, int]:
    """The period holding `as_of` (its end counts as inside), and the instant measured to; after
    the term: its last period, complete."""
    term = periods(terms)
    if as_of <= term[0].start:
        raise BeforeTerm(f"the term starts at {iso_utc(term[0].start)}; as_of {iso_utc(as_of)} is before it")
    for p in term:
        if p.start < as_of <= p.end:
            return p, as_of
    return term[-1], term[-1].end


# ------------------------------------------------------------------ month to date


def light(target_bps: int, r: SubjectResult) -> str:
    """red: the month's budget is spent (the target can no longer be met); amber: on course to
    spend it (burn rate above 1) or below target so far; green otherwise."""
    if r.budget_s is not None and r.budget_s < 0:
        return RED
    bad = r.counted_s - r.good_s
    if (r.burn_rate is None and bad > 0) or (r.burn_rate or 0) > 1 or r.attainment_bps < target_bps:
        return AMBER
    return GREEN


def worst(lights: list[str]) -> str:
    return max(lights, key=_RANK.__getitem__, default=GREEN)


def days_left(r: SubjectResult, elapsed_s: int) -> float | None:
    """Days until the budget is spent at the pace so far (None: nothing burnt yet)."""
    bad = r.counted_s - r.good_s
    if r.budget_s is None or bad <= 0 or elapsed_s <= 0:
        return None
    if r.budget_s <= 0:
        return 0.0
    return round(r.budget_s / (bad / elapsed_s) / 86_400, 2)


def month_to_date(terms: Terms, evidence: Evidence, label: str, as_of: int) -> dict[str, Any]:
    """The Status model's figures (amounts in smallest units) of period `label` up to `as_of`."""
    return summarize(compute_period(terms, evidence, label, as_of=as_of))


def summarize(result: PeriodResult) -> dict[str, Any]:
    assert result.as_of is not None
    elapsed = result.as_of - result.start
    objectives: list[dict[str, Any]] = []
    for o in result.objectives:
        rows: list[dict[str, Any]] = []
        for r in o.results:
            total = budget_allowed(o.target_bps, r.expected_counted_s or 0)
            rows.append({
                "subject": r.subject, "good_s": r.good_s, "counted_s": r.counted_s, "bad_s": r.counted_s - r.good_s,
                "attainment_bps": r.attainment_bps, "target_bps": o.target_bps, "met": r.met,
                "expected_counted_s": r.expected_counted_s, "budget_total_s": total, "budget_s": r.budget_s,
                "budget_left_pct": None if total == 0 else round(100 * (r.budget_s or 0) / total, 2),
                "burn_rate": r.burn_rate, "days_left": days_left(r, elapsed), "credit": r.credit,
                "state": light(o.target_bps, r)})
        objectives.append({"id": o.id, "kpi": o.kpi, "scope": o.scope, "target_bps": o.target_bps,
                           "state": worst([x["state"] for x in rows]), "results": rows})
    return {"label": result.label, "start": iso_utc(result.start), "end": iso_utc(result.end),
            "as_of": iso_utc(result.as_of), "evidence_root": result.evidence_root,
            "credit_so_far": result.total_credit, "state": worst([o["state"] for o in objectives]),
            "objectives": objectives}


def day_marks(terms: Terms, start: int, as_of: int) -> list[int]:
    """Local midnights (agreement time zone) after `start` up to `as_of`, then `as_of` itself."""
    tz = zone(terms.timezone)
    day = datetime.fromtimestamp(start, tz).date()
    marks = []
    while True:
        day += timedelta(days=1)
        t = int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())
        if t >= as_of:
            break
        marks.append(t)
    return marks + [as_of]


def burn_series(terms: Terms, evidence: Evidence, label: str, as_of: int) -> dict[str, Any]:
    """Cumulative bad time per objective and subject at each day mark, and as a percentage of the
    whole period's error budget (100 = budget spent)."""
    final = compute_period(terms, evidence, label, as_of=as_of, commit=False)
    marks = day_marks(terms, final.start, as_of)
    points = [compute_period(terms, evidence, label, as_of=t, commit=False) for t in marks[:-1]] + [final]
    objectives = []
    for i, o in enumerate(final.objectives):
        series = []
        for j, r in enumerate(o.results):
            total = budget_allowed(o.target_bps, r.expected_counted_s or 0)
            bad = []
            for p in points:
                po = p.objectives[i]
                # per-device subjects may differ between marks (deployments): match by name
                pr = po.results[j] if j < len(po.results) and po.results[j].subject == r.subject else next(
                    (x for x in po.results if x.subject == r.subject), None)
                bad.append(0 if pr is None else pr.counted_s - pr.good_s)
            series.append({"subject": r.subject, "budget_total_s": total, "bad_s": bad,
                           "burn_pct": [_pct(b, total) for b in bad]})
        objectives.append({"id": o.id, "kpi": o.kpi, "scope": o.scope, "target_bps": o.target_bps, "series": series})
    return {"label": final.label, "start": iso_utc(final.start), "end": iso_utc(final.end),
            "as_of": iso_utc(as_of), "marks": [iso_utc(t) for t in marks], "objectives": objectives}


# ------------------------------------------------------------------ forecast


def params(sims: int) -> ForecastParams:
    return ForecastParams(sims=sims, seed=SEED, history_days=HISTORY_DAYS)


def forecast_view(terms: Terms, evidence: Evidence, label: str, as_of: int, sims: int) -> dict[str, Any]:
    """The Forecast model's figures (amounts in smallest units) of period `label` from `as_of`."""
    report = forecast_period(terms, evidence, label, as_of, params(sims))
    objectives = []
    for o in terms.objectives:
        rows = [{"subject": s.subject, "attainment_bps": s.budget.attainment_bps, "target_bps": o.target_bps,
                 "p_meet": round(s.p_meet, 4),
                 "attainment_interval_bps": {"p05": s.attainment_p05, "p50": s.attainment_p50,
                                             "p95": s.attainment_p95},
                 "expected_credit": round(s.expected_credit), "credit_if_missed": s.credit_if_missed,
                 "status": s.status}
                for s in report.subjects if s.objective == o.id]
        objectives.append({"id": o.id, "kpi": o.kpi, "scope": o.scope, "target_bps": o.target_bps, "results": rows})
    priorities = [{"device": p.device, "site": p.site, "down_since": iso_utc(p.down_since),
                   "expected_credit_saved": round(p.expected_credit_saved), "site_lost": p.site_lost,
                   "subjects": [{"objective": o, "subject": s, "p_meet": round(p0, 4), "p_meet_if_fixed": round(p1, 4)}
                                for o, s, p0, p1 in p.subjects]}
                  for p in report.priorities]
    return {"label": report.label, "start": iso_utc(report.start), "end": iso_utc(report.end),
            "as_of": iso_utc(report.as_of), "sims": sims, "seed": SEED, "model": report.model.to_json_dict(),
            "objectives": objectives, "priorities": priorities}


def burn_bands(terms: Terms, evidence: Evidence, label: str, as_of: int, sims: int,
               subjects: list[tuple[str, str]]) -> dict[tuple[str, str], list[dict[str, Any]] | None]:
    """Per (objective, subject): budget used from as_of to period end, the forecast's 5th/50th/95th
    percentiles in seconds and as % of the period's budget (None for ticket KPIs: no time band)."""
    kpi = {o.id: o.kpi for o in terms.objectives}
    out: dict[tuple[str, str], list[dict[str, Any]] | None] = {}
    for objective, subject in subjects:
        if kpi[objective] in TICKET_KPIS:
            out[objective, subject] = None
            continue
        chart = burn_chart(terms, evidence, label, as_of, objective, subject, params(sims))
        total = chart.budget_total
        out[objective, subject] = [
            {"t": iso_utc(t), "p05_s": round(a, 1), "p50_s": round(b, 1), "p95_s": round(c, 1),
             "p05_pct": _pct(a, total), "p50_pct": _pct(b, total), "p95_pct": _pct(c, total)}
            for t, a, b, c in chart.forecast]
    return out


def _pct(used: float, total: int) -> float | None:
    """Budget used as % of the period's budget, as the burn series gives it (None: no budget)."""
    return None if total == 0 else round(100 * used / total, 2)
