"""Error-budget arithmetic against hand-worked cases: January 2027 (31 days, starts on a
Friday), UTC, business hours Monday to Friday 09:00-17:00, target 95%.

Counted time of the month: 21 weekdays x 8 h = 168 h = 604,800 s; budget 5% = 30,240 s
(8 h 24 m). Up to Saturday 16 January: 11 weekdays = 88 h = 316,800 s counted."""
from __future__ import annotations

from oracle.engine.budget import budget_status, subject_budget
from oracle.evidence.csv import parse_ts_text

from .conftest import write_case

AS_OF = parse_ts_text("2027-01-16T00:00:00Z")
MONTH_S = 21 * 8 * 3600
SO_FAR_S = 11 * 8 * 3600


def test_three_hours_down_in_business_hours(tmp_path):
    terms, ev = write_case(tmp_path, [("2027-01-01T00:00:00Z", "D1", "available"),
                                      ("2027-01-04T10:00:00Z", "D1", "faulted"),  # Monday 10:00-13:00
                                      ("2027-01-04T13:00:00Z", "D1", "available"),
                                      ("2027-01-09T10:00:00Z", "D1", "faulted"),  # Saturday: not counted
                                      ("2027-01-09T20:00:00Z", "D1", "available")])
    b = budget_status(terms, ev, "2027-01", AS_OF).get("avail", "s1")
    assert (b.expected_counted, b.counted, b.good) == (MONTH_S, SO_FAR_S, SO_FAR_S - 3 * 3600)
    assert b.budget_total == 30_240  # 5% of 604,800 s
    assert b.budget_used == 10_800
    assert b.budget_left == 19_440
    assert b.attainment_bps == 9659  # floor(10000 * 306,000 / 316,800)
    # burn = used / budget allowed for the elapsed counted time = 10,800 / (5% of 316,800)
    assert b.burn_rate == round(10_800 / (0.05 * SO_FAR_S), 4) == 0.6818
    assert not b.lost and b.exact
    assert abs(b.elapsed_share - SO_FAR_S / MONTH_S) < 1e-12


def test_scheduled_exclusion_shrinks_the_whole_month_budget(tmp_path):
    # A planned 2 h window next Wednesday is removed from the month's counted time now.
    terms, ev = write_case(tmp_path, [("2027-01-01T00:00:00Z", "D1", "available")],
                           exclusions=[("2027-01-20T09:00:00Z", "2027-01-20T11:00:00Z", "site:s1")])
    b = budget_status(terms, ev, "2027-01", AS_OF).get("avail", "s1")
    assert b.expected_counted == MONTH_S - 7200
    assert b.budget_total == 5 * (MONTH_S - 7200) // 100 == 29_880
    assert (b.budget_used, b.budget_left, b.burn_rate) == (0, 29_880, 0.0)


def test_outage_beyond_the_budget_is_lost(tmp_path):
    # Tuesday 09:00 to Wednesday 15:00: 8 h + 6 h = 14 h of business time > 8 h 24 m.
    terms, ev = write_case(tmp_path, [("2027-01-01T00:00:00Z", "D1", "available"),
                                      ("2027-01-05T09:00:00Z", "D1", "faulted"),
                                      ("2027-01-06T15:00:00Z", "D1", "available")])
    report = budget_status(terms, ev, "2027-01", AS_OF)
    b = report.get("avail", "s1")
    assert b.budget_used == 14 * 3600
    assert b.budget_left == 30_240 - 50_400 == -20_160
    assert b.lost
    assert report.get("uptime", "*").lost  # the estate's uptime over the same device
    d = report.to_json_dict()
    assert d["subjects"][0]["lost"] is True and d["as_of"] == "2027-01-16T00:00:00Z"


def test_24x7_month_budget():
    # 31 days x 86,400 s at 99.9%: 2,678.4 s allowed, floored.
    assert subject_budget(9990, 0, 0, 31 * 86_400) == (2678, 0, 2678)
    assert subject_budget(10_000, 5, 10, 100) == (0, 5, -5)
