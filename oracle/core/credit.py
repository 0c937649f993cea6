"""The credit schedule's arithmetic: the one Python definition, mirrored bit for bit by
`Agreement._creditFor` in Solidity (tests compare the two on random inputs).

All amounts are integers in the currency's smallest unit; all ratios are basis points.
Rounding: each subject's credit is rounded down; the sum is then capped at
floor(monthly_fee * credit_cap_bps / 10000).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

BPS = 10_000

# A tier is (below_bps, credit_bps). A schedule's tiers are sorted by below_bps strictly
# descending and credit_bps non-decreasing, so later tiers are more severe.
Tier = tuple[int, int]


def validate_tiers(tiers: Sequence[Tier]) -> None:
    """Raise ValueError unless tiers are a well-formed credit schedule."""
    if not tiers:
        raise ValueError("credits: at least one tier is required")
    prev_below, prev_credit = BPS + 1, 0
    for i, (below, credit) in enumerate(tiers):
        if not 0 < below <= BPS:
            raise ValueError(f"credits[{i}].below_bps: {below} is not in 1..{BPS}")
        if not 0 <= credit <= BPS:
            raise ValueError(f"credits[{i}].credit_bps: {credit} is not in 0..{BPS}")
        if below >= prev_below:
            raise ValueError(f"credits[{i}].below_bps: tiers must be sorted by below_bps, descending")
        if credit < prev_credit:
            raise ValueError(f"credits[{i}].credit_bps: a more severe tier cannot credit less")
        prev_below, prev_credit = below, credit


def tier_credit_bps(tiers: Sequence[Tier], attainment_bps: int) -> int:
    """Credit rate of the most severe tier whose below_bps is above the attainment (0 if none)."""
    rate = 0
    for below, credit in tiers:
        if attainment_bps >= below:
            break
        rate = credit
    return rate


def subject_credit(fee: int, tiers: Sequence[Tier], attainment_bps: int) -> int:
    """Credit owed for one subject (site, device or the estate), rounded down."""
    return fee * tier_credit_bps(tiers, attainment_bps) // BPS


def credit_cap(monthly_fee: int, credit_cap_bps: int) -> int:
    return monthly_fee * credit_cap_bps // BPS


def capped_total(subject_credits: Iterable[int], monthly_fee: int, credit_cap_bps: int) -> int:
    """Total credit of a period: the sum of subject credits, capped."""
    return min(sum(subject_credits), credit_cap(monthly_fee, credit_cap_bps))


# ------------------------------------------------------------------ error budgets


def budget_allowed(target_bps: int, expected_counted_s: int) -> int:
    """Bad seconds a whole period allows: floor((10000 - target) * expected counted time / 10000)."""
    return (BPS - target_bps) * expected_counted_s // BPS


def burn_rate(target_bps: int, good_s: int, counted_s: int, digits: int | None = 4) -> float | None:
    """Observed bad fraction over the allowed one (1.0 spends the budget exactly by period end):
    0.0 with no bad time, None (infinite) when the target is 100% and some time was bad.
    Rounded to `digits` decimals for display; `digits=None` gives the unrounded ratio that alert
    windows compare with thresholds, evaluated as (bad / counted) / (allowed / 10000): the
    order the alert rules were tuned on (a float a few ulps off would flip a burn exactly at a
    threshold)."""
    bad = counted_s - good_s
    allowed = BPS - target_bps
    if counted_s <= 0 or bad <= 0:
        return 0.0
    if allowed <= 0:
        return None
    if digits is None:
        return (bad / counted_s) / (allowed / BPS)
    return round(bad * BPS / counted_s / allowed, digits)


def budget_left(target_bps: int, good_s: int, counted_s: int, expected_counted_s: int) -> int:
    """Bad seconds the period still allows (negative: the budget is spent)."""
    return budget_allowed(target_bps, expected_counted_s) - (counted_s - good_s)
