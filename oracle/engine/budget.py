"""Error budgets month to date: per objective and subject, the bad time the whole period
allows, how much of it is used, how much is left and how fast it burns.

A thin reading of the KPI engine's month-to-date mode (`compute_period(..., as_of=...)`),
which already knows the counted time of the whole period in advance (business hours and
scheduled exclusions); nothing here re-does time arithmetic."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oracle.core.calendar import iso_utc
from oracle.core.credit import budget_allowed, budget_left
from oracle.core.terms import Terms
from oracle.engine.kpi import PeriodResult, compute_period
from oracle.evidence.load import Evidence

TICKET_KPIS = ("ticket_response", "ticket_resolution")


@dataclass(frozen=True)
class SubjectBudget:
    """One subject's budget. Units are seconds for time-based KPIs, tickets for ticket KPIs.

    - `budget_total` = floor((10000 − target) · expected_counted / 10000): the bad time the
      whole period allows (exact for time-based KPIs).
    - `budget_used` = bad so far; `budget_left` = total − used (negative: already lost).
    - `burn_rate` = used ÷ the budget allowed for the elapsed (counted) time, i.e.
      (bad / counted) / (1 − target); 1.0 spends the budget exactly by period end.
    """

    objective: str
    kpi: str
    scope: str
    subject: str
    target_bps: int
    good: int
    counted: int
    attainment_bps: int
    expected_counted: int
    budget_total: int
    budget_used: int
    budget_left: int
    burn_rate: float | None
    exact: bool  # time-based KPI: the period's counted time is known in advance

    @property
    def lost(self) -> bool:
        """Even a perfect rest of the period cannot meet the target."""
        return self.exact and self.budget_left < 0

    @property
    def elapsed_share(self) -> float:
        """Share of the period's counted time already elapsed."""
        return 1.0 if self.expected_counted <= 0 else self.counted / self.expected_counted

    @property
    def unit(self) -> str:
        return "tickets" if self.kpi in TICKET_KPIS else "seconds"

    def to_json_dict(self) -> dict[str, Any]:
        return {"objective": self.objective, "kpi": self.kpi, "scope": self.scope, "subject": self.subject,
                "target_bps": self.target_bps, "unit": self.unit, "good": self.good, "counted": self.counted,
                "attainment_bps": self.attainment_bps, "expected_counted": self.expected_counted,
                "elapsed_share": round(self.elapsed_share, 4), "budget_total": self.budget_total,
                "budget_used": self.budget_used, "budget_left": self.budget_left, "burn_rate": self.burn_rate,
                "exact": self.exact, "lost": self.lost}


@dataclass(frozen=True)
class BudgetReport:
    agreement: str
    label: str
    start: int
    end: int
    as_of: int
    subjects: tuple[SubjectBudget, ...]  # on-chain order: objectives, then their subjects

    def get(self, objective: str, subject: str) -> SubjectBudget:
        return next(s for s in self.subjects if s.objective == objective and s.subject == subject)

    def to_json_dict(self) -> dict[str, Any]:
        return {"agreement": self.agreement,
                "period": {"label": self.label, "start": iso_utc(self.start), "end": iso_utc(self.end)},
                "as_of": iso_utc(self.as_of), "subjects": [s.to_json_dict() for s in self.subjects]}


def subject_budget(target_bps: int, good: int, counted: int, expected_counted: int) -> tuple[int, int, int]:
    """(total, used, left) of one subject's error budget."""
    return (budget_allowed(target_bps, expected_counted), counted - good,
            budget_left(target_bps, good, counted, expected_counted))


def budget_from_period(result: PeriodResult) -> BudgetReport:
    """The budgets of a month-to-date PeriodResult (computed with `as_of`)."""
    if result.as_of is None:
        raise ValueError("budgets need a month-to-date result (compute_period with as_of)")
    rows = []
    for o in result.objectives:
        exact = o.kpi not in TICKET_KPIS
        for r in o.results:
            expected = r.counted_s if r.expected_counted_s is None else r.expected_counted_s
            total, used, left = subject_budget(o.target_bps, r.good_s, r.counted_s, expected)
            rows.append(SubjectBudget(o.id, o.kpi, o.scope, r.subject, o.target_bps, r.good_s, r.counted_s,
                                      r.attainment_bps, expected, total, used, left, r.burn_rate, exact))
    return BudgetReport(result.agreement, result.label, result.start, result.end, result.as_of, tuple(rows))


def budget_status(terms: Terms, evidence: Evidence, label: str, as_of: int) -> BudgetReport:
    """Month-to-date error budgets of period `label` at instant `as_of` (start < as_of ≤ end)."""
    return budget_from_period(compute_period(terms, evidence, label, as_of=as_of, commit=False))
