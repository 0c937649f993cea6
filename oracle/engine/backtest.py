"""Calibration backtest of the forecast on simulated history: simulate an estate with known
failure and repair rates, forecast every subject at mid-month from the evidence before that
instant, then compare with the month's real outcome. Scores: a reliability table (forecast
bucket vs observed frequency) and Brier scores against a naive baseline that extrapolates
the month-to-date attainment (P(meet) = 1 if it is on target now, else 0)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from oracle.core.terms import Terms, parse_terms
from oracle.engine.forecast import ForecastParams, forecast_period
from oracle.engine.kpi import compute_period
from oracle.evidence.load import Evidence, Exclusion, Ticket
from oracle.sim.output import terms_yaml
from oracle.sim.simulate import SimParams, Simulation, simulate_estate


def evidence_from_simulation(sim: Simulation, terms: Terms) -> Evidence:
    """The Evidence the loader would read from the simulation's CSV files, built in memory."""
    est = sim.estate
    order = np.lexsort((sim.events_state, sim.events_ts, sim.events_dev))
    dev, ts, st = sim.events_dev[order], sim.events_ts[order], sim.events_state[order]
    keep = np.concatenate([[True], (dev[1:] != dev[:-1]) | (ts[1:] != ts[:-1])]) if len(ts) else np.zeros(0, bool)
    excl = tuple(Exclusion(a, b, scope, reason, i + 2) for i, (a, b, scope, reason) in enumerate(sim.exclusions))
    tk = sim.tickets
    tickets = tuple(
        Ticket(f"T{i + 1:06d}", est.site_ids[int(s)], f"P{int(sev)}", int(o), None if r < 0 else int(r),
               None if z < 0 else int(z), i + 2)
        for i, (s, sev, o, r, z) in enumerate(zip(tk["site"].tolist(), tk["severity"].tolist(), tk["opened"].tolist(),
                                                  tk["responded"].tolist(), tk["resolved"].tolist())))
    site_index = {s.id: i for i, s in enumerate(terms.sites)}
    device_site = np.array([site_index[est.site_ids[s]] for s in est.device_site.tolist()], np.int64)
    return Evidence(tuple(est.device_ids), device_site, est.weight.astype(np.int64), est.deployed.astype(np.int64),
                    est.retired.astype(np.int64), dev[keep].astype(np.int64), ts[keep].astype(np.int64),
                    st[keep].astype(np.int8), excl, tickets)


@dataclass(frozen=True)
class Outcome:
    period: str
    objective: str
    subject: str
    p_model: float
    p_baseline: float
    met: bool
    mtd_bps: int
    final_bps: int
    lo_bps: int
    hi_bps: int


@dataclass(frozen=True)
class Bucket:
    lo: float
    hi: float
    n: int
    mean_forecast: float
    observed: float

    def to_json_dict(self) -> dict[str, Any]:
        return {"bucket": f"[{self.lo:.1f}, {self.hi:.1f}{']' if self.hi >= 1 else ')'}", "n": self.n,
                "mean_forecast": round(self.mean_forecast, 4), "observed": round(self.observed, 4)}


@dataclass(frozen=True)
class Calibration:
    outcomes: tuple[Outcome, ...]
    buckets: tuple[Bucket, ...]
    brier_model: float
    brier_baseline: float
    brier_climatology: float  # the base rate as a constant forecast (for reference)
    interval_coverage: float  # share of final attainments inside the 90% interval
    forecast_seconds: float

    def to_json_dict(self) -> dict[str, Any]:
        return {"subjects": len(self.outcomes), "brier_model": round(self.brier_model, 5),
                "brier_baseline": round(self.brier_baseline, 5),
                "brier_climatology": round(self.brier_climatology, 5),
                "interval_coverage_90": round(self.interval_coverage, 4),
                "reliability": [b.to_json_dict() for b in self.buckets],
                "forecast_seconds": round(self.forecast_seconds, 3)}

    def table(self) -> str:
        lines = ["forecast bucket   n     mean p   observed"]
        for b in self.buckets:
            lines.append(f"{b.to_json_dict()['bucket']:<14} {b.n:>5}   {b.mean_forecast:7.3f}   "
                         + (f"{b.observed:7.3f}" if b.n else "      -"))
        lines.append(f"Brier: model {self.brier_model:.4f} · baseline (MTD extrapolation) {self.brier_baseline:.4f}"
                     f" · climatology {self.brier_climatology:.4f} · 90% interval coverage {self.interval_coverage:.3f}"
                     f" · {len(self.outcomes)} subjects")
        return "\n".join(lines)


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[Bucket, ...]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    out = []
    for k in range(bins):
        m = idx == k
        out.append(Bucket(float(edges[k]), float(edges[k + 1]), int(m.sum()),
                          float(p[m].mean()) if m.any() else 0.0, float(y[m].mean()) if m.any() else 0.0))
    return tuple(out)


def score(outcomes: list[Outcome], seconds: float = 0.0) -> Calibration:
    p = np.array([o.p_model for o in outcomes])
    base = np.array([o.p_baseline for o in outcomes])
    y = np.array([o.met for o in outcomes], float)
    inside = np.array([o.lo_bps <= o.final_bps <= o.hi_bps for o in outcomes], float)
    return Calibration(tuple(outcomes), reliability(p, y), float(np.mean((p - y) ** 2)),
                       float(np.mean((base - y) ** 2)), float(np.mean((y.mean() - y) ** 2)),
                       float(inside.mean()), seconds)


def backtest(sim_params: SimParams, params: ForecastParams = ForecastParams(), as_of_share: float = 0.5,
             first: int = 1, time_kpis_only: bool = False) -> list[Outcome]:
    """Forecast every period from index `first` on at `as_of_share` of the period and score
    against the period's real outcome. Holidays are the simulator's (inside knowledge)."""
    sim = simulate_estate(sim_params)
    terms = parse_terms(terms_yaml(sim))
    if time_kpis_only:
        terms = replace(terms, objectives=tuple(o for o in terms.objectives if not o.kpi.startswith("ticket_")))
    ev = evidence_from_simulation(sim, terms)
    params = replace(params, holidays=tuple(sim.clock.holiday_dates(*sim.horizon)))
    out: list[Outcome] = []
    for label, start, end in sim.periods[first:]:
        as_of = start + int((end - start) * as_of_share)
        fc = forecast_period(terms, ev, label, as_of, params, prioritise=False)
        actual = compute_period(terms, ev, label)
        for o in actual.objectives:
            for r in o.results:
                f = fc.get(o.id, r.subject)
                mtd = f.budget.attainment_bps
                out.append(Outcome(label, o.id, r.subject, f.p_meet, 1.0 if mtd >= o.target_bps else 0.0,
                                   r.met, mtd, r.attainment_bps, f.attainment_p05, f.attainment_p95))
    return out
