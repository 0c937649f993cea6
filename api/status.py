"""Month-to-date status from the KPI engine's as-of mode: per objective and subject the attainment
so far, error budget left, burn rate, a red/amber/green state, and the cumulative budget burn per
day (the dashboard's chart). Pure: takes terms and evidence, returns plain data."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from oracle.core.calendar import iso_utc, zone
from oracle.core.credit import BPS
from oracle.core.terms import Terms
from oracle.engine.kpi import PeriodResult, SubjectResult, compute_period

GREEN, AMBER, RED = "green", "amber", "red"
_RANK = {GREEN: 0, AMBER: 1, RED: 2}


def budget_total(target_bps: int, expected_counted_s: int) -> int:
    """Bad time the whole period allows (the engine's budget before any bad time)."""
    return (BPS - target_bps) * expected_counted_s // BPS


def subject_state(target_bps: int, r: SubjectResult) -> str:
    """red: the month's budget is spent (the target can no longer be met); amber: on course to
    spend it (burn rate above 1) or below target so far; green otherwise."""
    if r.budget_s is not None and r.budget_s < 0:
        return RED
    bad = r.counted_s - r.good_s
    if (r.burn_rate is None and bad > 0) or (r.burn_rate or 0) > 1 or r.attainment_bps < target_bps:
        return AMBER
    return GREEN


def worst(states: list[str]) -> str:
    return max(states, key=_RANK.__getitem__, default=GREEN)


def days_left(r: SubjectResult, elapsed_s: int) -> float | None:
    """Days until the budget is spent at the pace so far (None: nothing burnt yet)."""
    bad = r.counted_s - r.good_s
    if r.budget_s is None or bad <= 0 or elapsed_s <= 0:
        return None
    if r.budget_s <= 0:
        return 0.0
    return round(r.budget_s / (bad / elapsed_s) / 86_400, 2)


def month_to_date(terms: Terms, evidence: Any, label: str, as_of: int) -> dict[str, Any]:
    result = compute_period(terms, evidence, label, as_of=as_of)
    return summarize(result)


def summarize(result: PeriodResult) -> dict[str, Any]:
    assert result.as_of is not None
    elapsed = result.as_of - result.start
    objectives = []
    for o in result.objectives:
        rows = []
        for r in o.results:
            total = budget_total(o.target_bps, r.expected_counted_s or 0)
            rows.append({
                "subject": r.subject, "good_s": r.good_s, "counted_s": r.counted_s, "bad_s": r.counted_s - r.good_s,
                "attainment_bps": r.attainment_bps, "target_bps": o.target_bps, "met": r.met,
                "expected_counted_s": r.expected_counted_s, "budget_total_s": total, "budget_s": r.budget_s,
                "budget_left_pct": None if total == 0 else round(100 * (r.budget_s or 0) / total, 2),
                "burn_rate": r.burn_rate, "days_left": days_left(r, elapsed), "credit": r.credit,
                "state": subject_state(o.target_bps, r)})
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


def burn_series(terms: Terms, evidence: Any, label: str, as_of: int) -> dict[str, Any]:
    """Cumulative bad time per objective and subject at each day mark, and as a percentage of the
    whole period's error budget (100 = budget spent)."""
    final = compute_period(terms, evidence, label, as_of=as_of, commit=False)
    marks = day_marks(terms, final.start, as_of)
    points = [compute_period(terms, evidence, label, as_of=t, commit=False) for t in marks[:-1]] + [final]
    objectives = []
    for i, o in enumerate(final.objectives):
        series = []
        for j, r in enumerate(o.results):
            total = budget_total(o.target_bps, r.expected_counted_s or 0)
            bad = []
            for p in points:
                po = p.objectives[i]
                # per-device subjects may differ between marks (deployments): match by name
                pr = po.results[j] if j < len(po.results) and po.results[j].subject == r.subject else next(
                    (x for x in po.results if x.subject == r.subject), None)
                bad.append(0 if pr is None else pr.counted_s - pr.good_s)
            series.append({"subject": r.subject, "budget_total_s": total, "bad_s": bad,
                           "burn_pct": [None if total == 0 else round(100 * b / total, 2) for b in bad]})
        objectives.append({"id": o.id, "kpi": o.kpi, "scope": o.scope, "target_bps": o.target_bps, "series": series})
    return {"label": final.label, "start": iso_utc(final.start), "end": iso_utc(final.end),
            "as_of": iso_utc(as_of), "marks": [iso_utc(t) for t in marks], "objectives": objectives}
