"""The forecast report: per subject the probability of meeting the target, the interval of the
final attainment and the expected credit (`forecast_period`), and the open faults ranked by
the credit that fixing them now is expected to save."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from oracle.core.calendar import iso_utc
from oracle.core.credit import BPS
from oracle.core.period import period_bounds
from oracle.core.terms import Objective, Terms
from oracle.engine.budget import TICKET_KPIS, BudgetReport, SubjectBudget, budget_from_period
from oracle.engine.forecast.model import (
    DAY,
    F64,
    FittedModel,
    ForecastParams,
    LocalTime,
    evidence_before,
    fit_model,
    site_zones,
)
from oracle.engine.forecast.runs import Draw, Frame, build_frame, draw_split, evaluate_split, ticket_draws, unit_columns
from oracle.engine.kpi import ESTATE, compute_period
from oracle.evidence.load import Evidence


@dataclass(frozen=True)
class SubjectForecast:
    """Forecast of one subject. Attainments in basis points; credits in smallest units."""

    budget: SubjectBudget
    p_meet: float
    attainment_p05: int
    attainment_p50: int
    attainment_p95: int
    expected_credit: float
    credit_if_missed: int  # credit at the first tier below the target
    status: str  # "lost" | "at_risk" | "on_track"

    @property
    def objective(self) -> str:
        return self.budget.objective

    @property
    def subject(self) -> str:
        return self.budget.subject

    def to_json_dict(self) -> dict[str, Any]:
        return {"objective": self.objective, "subject": self.subject, "kpi": self.budget.kpi,
                "scope": self.budget.scope, "target_bps": self.budget.target_bps,
                "attainment_bps": self.budget.attainment_bps, "p_meet": round(self.p_meet, 4),
                "attainment_interval_bps": {"p05": self.attainment_p05, "p50": self.attainment_p50,
                                            "p95": self.attainment_p95},
                "expected_credit": str(int(round(self.expected_credit))),
                "credit_if_missed": str(self.credit_if_missed), "status": self.status,
                "budget": self.budget.to_json_dict()}


@dataclass(frozen=True)
class FaultPriority:
    """An open fault (a device down now) and what fixing it now is expected to save."""

    device: str
    site: str
    down_since: int
    expected_credit_saved: float  # smallest units
    subjects: tuple[tuple[str, str, float, float], ...]  # (objective, subject, P(meet) now, if fixed)
    site_lost: bool  # every per-site subject of the device's site is already lost

    def to_json_dict(self) -> dict[str, Any]:
        return {"device": self.device, "site": self.site, "down_since": iso_utc(self.down_since),
                "expected_credit_saved": str(int(round(self.expected_credit_saved))), "site_lost": self.site_lost,
                "subjects": [{"objective": o, "subject": s, "p_meet": round(p0, 4), "p_meet_if_fixed": round(p1, 4)}
                             for o, s, p0, p1 in self.subjects]}


@dataclass(frozen=True)
class ForecastReport:
    agreement: str
    label: str
    start: int
    end: int
    as_of: int
    params: ForecastParams
    model: FittedModel
    subjects: tuple[SubjectForecast, ...]
    priorities: tuple[FaultPriority, ...]
    seconds: float
    samples: dict[tuple[str, str], NDArray[np.int64]] = field(default_factory=dict, repr=False)

    def get(self, objective: str, subject: str) -> SubjectForecast:
        return next(s for s in self.subjects if s.objective == objective and s.subject == subject)

    def to_json_dict(self) -> dict[str, Any]:
        return {"agreement": self.agreement,
                "period": {"label": self.label, "start": iso_utc(self.start), "end": iso_utc(self.end)},
                "as_of": iso_utc(self.as_of), "sims": self.params.sims, "seed": self.params.seed,
                "model": self.model.to_json_dict(), "seconds": round(self.seconds, 3),
                "subjects": [s.to_json_dict() for s in self.subjects],
                "priorities": [p.to_json_dict() for p in self.priorities]}


def _fee(terms: Terms, o: Objective, subject: str, site_fee: dict[str, int]) -> int:
    if o.scope == "per_site":
        return site_fee[subject]
    return terms.monthly_fee if o.scope == "estate" else o.device_fee


def _final(budget: SubjectBudget, bad: F64, extra: tuple[F64, F64] | None) -> NDArray[np.int64]:
    """Final attainment per run (basis points, floored)."""
    if extra is not None:
        good = budget.good + extra[0]
        counted = budget.counted + extra[1]
    else:
        rem = budget.expected_counted - budget.counted
        good = budget.good + rem - np.minimum(bad, rem)
        counted = np.full(len(bad), float(budget.expected_counted))
    return _attainment(good, counted)


def _attainment(good: F64, counted: F64) -> NDArray[np.int64]:
    att = np.where(counted > 0, np.floor(BPS * good / np.maximum(counted, 1) + 1e-9), BPS)
    return att.astype(np.int64)


def _credits(fee: int | NDArray[np.int64], o: Objective, att: NDArray[np.int64]) -> F64:
    """`oracle.core.credit.subject_credit` elementwise (the same tier walk, vectorised)."""
    rate = np.zeros(att.shape, np.int64)
    for below, credit in o.tiers:  # below_bps descending: the last tier above the attainment wins
        rate = np.where(att < below, credit, rate)
    return (np.asarray(fee, np.int64) * rate // BPS).astype(float)


def _objective_forecasts(o: Objective, rows: list[SubjectBudget], fees: NDArray[np.int64], bad: F64 | None,
                         tickets: dict[tuple[str, str], tuple[F64, F64]], sims: int, at_risk_below: float
                         ) -> tuple[list[SubjectForecast], NDArray[np.int64]]:
    """Forecasts of one objective's subjects; `bad` is (sims, subjects) simulated bad time."""
    good = np.array([b.good for b in rows], float)[None, :]
    counted = np.array([b.counted for b in rows], float)[None, :]
    if o.kpi in TICKET_KPIS:
        zero = (np.zeros(sims), np.zeros(sims))
        fut = [tickets.get((o.id, b.subject), zero) for b in rows]
        att = _attainment(good + np.stack([f[0] for f in fut], 1), counted + np.stack([f[1] for f in fut], 1))
    else:
        expected = np.array([b.expected_counted for b in rows], float)[None, :]
        rem = expected - counted
        lost = np.zeros((sims, len(rows))) if bad is None else np.minimum(bad, rem)
        att = _attainment(good + rem - lost, np.broadcast_to(expected, lost.shape))
    p = (att >= o.target_bps).mean(axis=0)
    q = np.percentile(att, [5, 50, 95], axis=0, method="nearest").astype(np.int64)
    credit = _credits(fees[None, :], o, att).mean(axis=0)
    missed = _credits(fees, o, np.full(len(rows), o.target_bps - 1)) if o.target_bps > 0 else np.zeros(len(rows))
    out = []
    for i, b in enumerate(rows):
        status = "lost" if b.lost else ("at_risk" if p[i] < at_risk_below else "on_track")
        out.append(SubjectForecast(b, float(p[i]), int(q[0, i]), int(q[1, i]), int(q[2, i]), float(credit[i]),
                                   int(missed[i]), status))
    return out, att


def forecast_period(terms: Terms, evidence: Evidence, label: str, as_of: int,
                    params: ForecastParams = ForecastParams(), prioritise: bool = True,
                    budgets: BudgetReport | None = None, model: FittedModel | None = None) -> ForecastReport:
    """Forecast every subject of period `label` at `as_of` from the evidence before it
    (events after `as_of` are ignored). With `prioritise`, also rank the open faults by
    expected credit saved if fixed now. `budgets`: the month-to-date budgets, if already
    computed for the same instant (saves a KPI run); `model`: a model fitted earlier (see
    `fit`), e.g. once a day, instead of fitting now."""
    t0 = time.perf_counter()
    start, end = period_bounds(terms, label)
    ev = evidence_before(evidence, as_of)
    zones, site_zone = site_zones(terms)
    local = LocalTime(zones, min(start, as_of - int(params.history_days * DAY)), end, params.holidays)
    # The month-to-date KPIs are needed only once the runs are drawn and evaluated: they run on
    # one worker meanwhile, the two halves of the runs on the other two (numpy releases the GIL
    # in the big array operations, so the KPI pass, the fit and the runs share the cores).
    with ThreadPoolExecutor(max_workers=3) as pool:
        pending = pool.submit(compute_period, terms, ev, label, as_of=as_of, commit=False) if budgets is None else None
        if model is None:
            model = fit_model(terms, ev, as_of, params, local, site_zone)
        rng = np.random.default_rng(params.seed)
        sims = params.sims
        fr = build_frame(terms, ev, model, start, as_of, end, sims, local, site_zone)
        draw = draw_split(model, fr, rng, site_zone[ev.device_site], pool)
        units = evaluate_split(fr, draw, pool)
        if pending is not None:
            budgets = budget_from_period(pending.result())
        assert budgets is not None
        tickets = ticket_draws(terms, budgets, start, as_of, end, sims, rng)
        site_fee = {s.id: s.fee for s in terms.sites}
        results: list[SubjectForecast] = []
        samples: dict[tuple[str, str], NDArray[np.int64]] = {}
        for o in terms.objectives:
            rows = [b for b in budgets.subjects if b.objective == o.id]
            fees = np.array([_fee(terms, o, b.subject, site_fee) for b in rows], np.int64)
            bad = unit_columns(terms, ev, o, units[o.id], rows) if o.id in units else None
            res, att = _objective_forecasts(o, rows, fees, bad, tickets, sims, params.at_risk_below)
            results += res
            samples.update({(o.id, b.subject): att[:, i] for i, b in enumerate(rows)})
        priorities: tuple[FaultPriority, ...] = ()
        if prioritise:
            priorities = _prioritise(fr, draw, model, budgets, units, samples, pool)
        return ForecastReport(terms.agreement, label, start, end, as_of, params, model, tuple(results), priorities,
                              time.perf_counter() - t0, samples)


# --------------------------------------------------------------------------- prioritising


def _prioritise(fr: Frame, draw: Draw, model: FittedModel, budgets: BudgetReport, units: dict[str, F64],
                base: dict[tuple[str, str], NDArray[np.int64]], pool: ThreadPoolExecutor) -> tuple[FaultPriority, ...]:
    """Expected credit saved by ending each open down spell now. Common random numbers: the
    same runs re-evaluated without that spell. A site's subjects depend only on its own
    devices, so one round fixes one fault per site and re-evaluates only those sites; an
    estate subject's runs change by that site's difference alone."""
    terms, ev = fr.terms, fr.ev
    open_devs = np.flatnonzero((model.open_age >= 0) & (ev.deployed <= fr.as_of) & (ev.retired > fr.as_of))
    if not len(open_devs) or fr.as_of >= fr.end:
        return ()
    site = ev.device_site[open_devs]
    order = np.lexsort((open_devs, site))
    open_devs, site = open_devs[order], site[order]
    rank = np.arange(len(open_devs)) - np.searchsorted(site, site)
    by_key = {(b.objective, b.subject): b for b in budgets.subjects}
    time_objs = [o for o in terms.objectives if o.id in units]
    site_fee = {s.id: s.fee for s in terms.sites}
    fees = {(o.id, s): _fee(terms, o, s, site_fee) for o in time_objs for (oid, s) in by_key if oid == o.id}
    base_credit = {k: float(_credits(fees[k], next(o for o in time_objs if o.id == k[0]), base[k]).mean())
                   for k in fees}
    estate_total = {o.id: units[o.id].sum(axis=1) for o in time_objs if o.scope == "estate"}
    draw = draw.subset(np.isin(ev.device_site[draw.dev], site))  # only sites with an open fault matter
    draw_site = ev.device_site[draw.dev]
    saved = np.zeros(len(open_devs))
    rows: list[list[tuple[str, str, float, float]]] = [[] for _ in open_devs]
    for r in range(int(rank.max()) + 1):
        in_round = np.flatnonzero(rank == r)
        fixed = open_devs[in_round]
        keep = np.isin(draw_site, site[in_round]) & ~(draw.initial & np.isin(draw.dev, fixed))
        after = evaluate_split(fr, draw.subset(keep), pool)
        for i in in_round.tolist():
            d, s = int(open_devs[i]), int(site[i])
            for o in time_objs:
                if o.scope == "per_device":
                    subj, bad = ev.device_ids[d], after[o.id][:, d]
                elif o.scope == "per_site":
                    subj, bad = terms.sites[s].id, after[o.id][:, s]
                else:
                    subj, bad = ESTATE, estate_total[o.id] - units[o.id][:, s] + after[o.id][:, s]
                k = (o.id, subj)
                if k not in by_key:
                    continue
                att = _final(by_key[k], bad, None)
                saved[i] += base_credit[k] - float(_credits(fees[k], o, att).mean())
                rows[i].append((o.id, subj, float(np.mean(base[k] >= o.target_bps)),
                                float(np.mean(att >= o.target_bps))))
    out = []
    for i, d in enumerate(open_devs.tolist()):
        sid = terms.sites[int(site[i])].id
        mine = [b for b in budgets.subjects if b.scope == "per_site" and b.subject == sid and b.exact]
        out.append(FaultPriority(ev.device_ids[d], sid, fr.as_of - int(model.open_age[d]), float(saved[i]),
                                 tuple(rows[i]), bool(mine) and all(b.lost for b in mine)))
    out.sort(key=lambda f: (-f.expected_credit_saved, f.device))
    return tuple(out)
