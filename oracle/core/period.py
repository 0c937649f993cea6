"""An agreement period as one value: its 0-based index in the term, its "YYYY-MM" label and its
[start, end) bounds in UTC epoch seconds (calendar months in the agreement's time zone)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from oracle.core.calendar import add_months, month_bounds, parse_label
from oracle.core.terms import Terms, TermsError


@dataclass(frozen=True, slots=True)
class Period:
    """One period of an agreement's term."""

    index: int
    label: str
    start: int
    end: int

    @property
    def bounds(self) -> tuple[int, int]:
        return self.start, self.end

    @property
    def length_s(self) -> int:
        return self.end - self.start


@lru_cache(maxsize=4096)
def _periods(timezone: str, first: str, count: int) -> tuple[Period, ...]:
    y, m = parse_label(first)
    out = []
    for k in range(count):
        yy, mm = add_months(y, m, k)
        label = f"{yy:04d}-{mm:02d}"
        start, end = month_bounds(timezone, label)
        out.append(Period(k, label, start, end))
    return tuple(out)


def periods(terms: Terms) -> tuple[Period, ...]:
    """Every period of the term, in order."""
    return _periods(terms.timezone, terms.first_period, terms.periods)


def period_at(terms: Terms, index: int) -> Period:
    """The period at 0-based `index`; TermsError if outside the term."""
    all_periods = periods(terms)
    if not 0 <= index < len(all_periods):
        raise TermsError("term", f"period index {index} is outside the term (0..{len(all_periods) - 1})")
    return all_periods[index]


def period_of(terms: Terms, label: str) -> Period:
    """The period labelled `label` ("YYYY-MM"); TermsError if malformed or outside the term."""
    parse_label(label)
    for p in periods(terms):
        if p.label == label:
            return p
    first, last = periods(terms)[0].label, periods(terms)[-1].label
    raise TermsError("term", f"period {label} is outside the term {first}..{last}")


def period_labels(terms: Terms) -> list[str]:
    """Labels 'YYYY-MM' of every period of the term, in order."""
    return [p.label for p in periods(terms)]


def period_bounds(terms: Terms, label: str) -> tuple[int, int]:
    """[start, end) UTC epoch seconds of calendar month `label` in the agreement's zone (any
    month, inside the term or not: forecasts and simulations look outside it)."""
    return month_bounds(terms.timezone, label)


def period_index(terms: Terms, label: str) -> int:
    """0-based index of `label` in the term; TermsError if outside it."""
    return period_of(terms, label).index


def window_bounds(terms: Terms, window: str, label: str) -> tuple[int, int]:
    """[start, end) of an objective's `window` evaluated at period `label` (docs/terms.md §4.1):
    `period` is the period itself; `trailing_12_months` the twelve calendar months ending with
    it; `calendar_year` January of the period's year to the period's end (year to date). The
    longer windows never start before the term's first period: the agreement has no history
    before it, so at the start of a term they are shorter (from the term's start)."""
    start, end = period_bounds(terms, label)
    if window == "period":
        return start, end
    y, m = parse_label(label)
    if window == "trailing_12_months":
        yy, mm = add_months(y, m, -11)
    elif window == "calendar_year":
        yy, mm = y, 1
    else:
        raise TermsError("window", f"{window!r} is not a window")
    w0 = month_bounds(terms.timezone, f"{yy:04d}-{mm:02d}")[0]
    return max(w0, periods(terms)[0].start), end


def evidence_start(terms: Terms, label: str) -> int:
    """Where the evidence a period commits to begins: the earliest start of its objectives'
    windows (the period's own start when every objective has `window: period`)."""
    return min(window_bounds(terms, o.window, label)[0] for o in terms.objectives)
