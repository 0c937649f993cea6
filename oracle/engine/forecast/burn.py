"""The budget-burn chart of one subject: budget used so far, day by day, then the forecast's
5th/50th/95th percentiles to period end."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from oracle.core.calendar import iso_utc
from oracle.core.period import period_bounds
from oracle.core.terms import Terms
from oracle.engine.budget import TICKET_KPIS, budget_from_period
from oracle.engine.forecast.model import DAY, ForecastParams, LocalTime, evidence_before, fit_model, site_zones
from oracle.engine.forecast.runs import build_frame, draw_split, evaluate_split, unit_columns
from oracle.engine.kpi import compute_period, measure_window
from oracle.evidence.load import Evidence


@dataclass(frozen=True)
class BurnChart:
    """Budget used over the period for one subject: observed up to `as_of`, then the
    forecast's 5th/50th/95th percentiles; `budget_total` is the line not to cross."""

    objective: str
    subject: str
    unit: str
    budget_total: int
    as_of: int
    observed: tuple[tuple[int, int], ...]  # (instant, budget used)
    forecast: tuple[tuple[int, float, float, float], ...]  # (instant, p05, p50, p95)

    def to_json_dict(self) -> dict[str, Any]:
        return {"objective": self.objective, "subject": self.subject, "unit": self.unit,
                "budget_total": self.budget_total, "as_of": iso_utc(self.as_of),
                "observed": [{"t": iso_utc(t), "used": u} for t, u in self.observed],
                "forecast": [{"t": iso_utc(t), "p05": round(a, 1), "p50": round(b, 1), "p95": round(c, 1)}
                             for t, a, b, c in self.forecast]}


def burn_chart(terms: Terms, evidence: Evidence, label: str, as_of: int, objective: str, subject: str,
               params: ForecastParams = ForecastParams(), points: int = 16) -> BurnChart:
    """The budget-burn chart of one time-based subject with the forecast band (the same
    model and runs as `forecast_period`, restricted to that objective)."""
    o = next(x for x in terms.objectives if x.id == objective)
    if o.kpi in TICKET_KPIS:
        raise ValueError(f"{objective}: burn charts are for time-based KPIs")
    terms1 = replace(terms, objectives=(o,))
    start, end = period_bounds(terms, label)
    ev = evidence_before(evidence, as_of)
    budget = budget_from_period(compute_period(terms1, ev, label, as_of=as_of, commit=False)).get(objective, subject)
    observed = []
    for t in [*range(start + DAY, as_of, DAY), as_of]:
        good, counted = measure_window(terms1, ev, start, t).get((objective, subject), (0, 0))
        observed.append((t, counted - good))
    forecast: list[tuple[int, float, float, float]] = []
    if as_of < end:
        zones, site_zone = site_zones(terms1)
        local = LocalTime(zones, min(start, as_of - int(params.history_days * DAY)), end, params.holidays)
        model = fit_model(terms1, ev, as_of, params, local, site_zone)
        fr = build_frame(terms1, ev, model, start, as_of, end, params.sims, local, site_zone)
        with ThreadPoolExecutor(max_workers=2) as pool:  # the same runs as forecast_period's
            draw = draw_split(model, fr, np.random.default_rng(params.seed), site_zone[ev.device_site], pool)
            cols = [(c, unit_columns(terms1, ev, o, evaluate_split(fr, draw, pool, until=c)[objective], [budget])[:, 0])
                    for c in np.unique(np.linspace(as_of, end, max(points, 2)).astype(np.int64)).tolist()]
        for c, col in cols:
            p05, p50, p95 = np.percentile(budget.budget_used + col, [5, 50, 95])
            forecast.append((c, float(p05), float(p50), float(p95)))
    return BurnChart(objective, subject, budget.unit, budget.budget_total, as_of, tuple(observed), tuple(forecast))
