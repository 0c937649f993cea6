"""The period's forecast for the API: oracle.engine.forecast's report as plain data (per objective and
subject the probability of meeting the target, the 90% interval of final attainment, expected
credit, status; the open faults worth fixing first) and the forecast band of the budget-burn
chart. Pure: takes terms and evidence, returns plain data; amounts stay in smallest units."""
from __future__ import annotations

from typing import Any

from oracle.core.calendar import iso_utc
from oracle.core.terms import Terms
from oracle.engine.budget import TICKET_KPIS
from oracle.engine.forecast import ForecastParams, burn_chart, forecast_period
from oracle.evidence.load import Evidence

SEED = 0  # fixed: a request gives the same numbers every time, so cached answers stay true
DEFAULT_SIMS, MIN_SIMS, MAX_SIMS = 300, 50, 2000
HISTORY_DAYS = ForecastParams.history_days  # the fit window before as_of the evidence must cover


def params(sims: int) -> ForecastParams:
    return ForecastParams(sims=sims, seed=SEED, history_days=HISTORY_DAYS)


def forecast_view(terms: Terms, evidence: Evidence, label: str, as_of: int, sims: int) -> dict[str, Any]:
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
