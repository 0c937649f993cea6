"""The forecast: its probabilities where the answer is certain, no look-ahead, the ranking
of open faults, and the calibration backtest on simulated history (model vs baseline)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from oracle.core.credit import subject_credit
from oracle.core.terms import parse_terms
from oracle.engine.backtest import backtest, evidence_from_simulation, score
from oracle.engine.forecast import ForecastParams, LocalTime, forecast_period
from oracle.engine.forecast.report import _credits
from oracle.engine.kpi import compute_period
from oracle.evidence.csv import parse_ts_text
from oracle.sim.output import terms_yaml
from oracle.sim.simulate import SimParams, simulate_estate

from .conftest import write_case

AS_OF = parse_ts_text("2027-01-16T00:00:00Z")
QUICK = ForecastParams(sims=300, seed=1)
# An estate tuned so that many sites end the month near their targets.
MARGINAL = dict(devices_per_site=3, bad_sites=2, failure_rate=0.008, mttr_weekday_h=12.0, mttr_weekend_h=36.0)


def test_lost_subject_has_probability_zero(tmp_path):
    terms, ev = write_case(tmp_path, [("2027-01-01T00:00:00Z", "D1", "available"),
                                      ("2027-01-05T09:00:00Z", "D1", "faulted"),
                                      ("2027-01-06T15:00:00Z", "D1", "available")])
    f = forecast_period(terms, ev, "2027-01", AS_OF, QUICK).get("avail", "s1")
    assert f.p_meet == 0.0 and f.status == "lost"
    assert f.expected_credit == 100_000_000  # the whole site fee (100 USDC), in every run


def test_secured_subject_has_probability_one(tmp_path):
    # Target 10%: even if the device is down for the rest of the month it meets it.
    terms, ev = write_case(tmp_path, [("2027-01-01T00:00:00Z", "D1", "available")], target=1000)
    f = forecast_period(terms, ev, "2027-01", AS_OF, QUICK).get("avail", "s1")
    assert f.p_meet == 1.0 and f.status == "on_track" and f.expected_credit == 0


def test_open_fault_that_ate_most_of_the_budget_is_at_risk(tmp_path):
    # Down since Thursday 14 January 09:00; 2 h lost on Tuesday: 5 h of the 8 h 24 m used.
    # Past repairs took 2 h, 48 h and 50 h (the long ones over weekends): in the balance.
    events = [("2027-01-01T00:00:00Z", "D1", "available"),
              ("2027-01-01T18:00:00Z", "D1", "faulted"), ("2027-01-03T18:00:00Z", "D1", "available"),
              ("2027-01-08T18:00:00Z", "D1", "faulted"), ("2027-01-10T20:00:00Z", "D1", "available"),
              ("2027-01-12T09:00:00Z", "D1", "faulted"), ("2027-01-12T11:00:00Z", "D1", "available"),
              ("2027-01-14T09:00:00Z", "D1", "faulted")]
    terms, ev = write_case(tmp_path, events)
    report = forecast_period(terms, ev, "2027-01", parse_ts_text("2027-01-14T12:00:00Z"), QUICK)
    f = report.get("avail", "s1")
    assert 0.0 < f.p_meet < 1.0 and f.status == "at_risk"
    assert f.attainment_p05 <= f.attainment_p50 <= f.attainment_p95
    [fault] = report.priorities
    assert fault.device == "D1" and fault.expected_credit_saved > 0 and not fault.site_lost
    (_, _, p_now, p_fixed), *_ = fault.subjects
    assert p_fixed > p_now


def test_events_after_as_of_are_not_used(tmp_path):
    early = [("2027-01-01T00:00:00Z", "D1", "available"), ("2027-01-12T10:00:00Z", "D1", "faulted"),
             ("2027-01-12T12:00:00Z", "D1", "available")]
    late = [("2027-01-20T10:00:00Z", "D1", "faulted")]  # after as_of: must not change anything
    t1, e1 = write_case(tmp_path / "a", early)
    t2, e2 = write_case(tmp_path / "b", early + late)
    a = forecast_period(t1, e1, "2027-01", AS_OF, QUICK).to_json_dict()
    b = forecast_period(t2, e2, "2027-01", AS_OF, QUICK).to_json_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def test_forecast_at_period_end_is_the_outcome(tmp_path):
    terms, ev = write_case(tmp_path, [("2027-01-01T00:00:00Z", "D1", "available"),
                                      ("2027-01-05T09:00:00Z", "D1", "faulted"),
                                      ("2027-01-05T12:00:00Z", "D1", "available")])
    end = parse_ts_text("2027-02-01T00:00:00Z")
    report = forecast_period(terms, ev, "2027-01", end, QUICK)
    final = compute_period(terms, ev, "2027-01")
    for o in final.objectives:
        for r in o.results:
            f = report.get(o.id, r.subject)
            assert f.p_meet == float(r.met) and f.attainment_p50 == r.attainment_bps


def test_weekends_and_holidays_are_off_days():
    lt = LocalTime(["Europe/London"], parse_ts_text("2026-12-20T00:00:00Z"), parse_ts_text("2027-01-10T00:00:00Z"),
                   holidays=["2026-12-25"])
    t = np.array([parse_ts_text(x) for x in ("2026-12-24T12:00:00Z", "2026-12-25T12:00:00Z",
                                             "2026-12-26T12:00:00Z", "2026-12-28T00:30:00Z")])
    hour, off = lt.hour_offday(t, np.zeros(4, np.int64))
    assert off.tolist() == [False, True, True, False]  # Thursday, holiday, Saturday, Monday
    assert hour.tolist() == [12, 12, 12, 0]


def test_vectorised_credit_matches_the_schedule():
    rng = np.random.default_rng(5)
    obj = replace(parse_terms(terms_yaml(simulate_estate(SimParams(sites=1, months=1)))).objectives[2])
    att = rng.integers(8000, 10_001, 2000)
    fee = 123_456_789
    assert _credits(fee, obj, att).astype(int).tolist() == [subject_credit(fee, obj.tiers, int(a)) for a in att]


def test_priorities_skip_lost_sites_and_rank_by_credit_saved():
    sim = simulate_estate(SimParams(sites=30, months=1, seed=11, **MARGINAL))
    terms = parse_terms(terms_yaml(sim))
    ev = evidence_from_simulation(sim, terms)
    label, start, end = sim.periods[0]
    report = forecast_period(terms, ev, label, start + (end - start) // 2, QUICK)
    saved = [p.expected_credit_saved for p in report.priorities]
    assert saved == sorted(saved, reverse=True) and report.priorities
    lost_sites = {s.subject for s in report.subjects if s.status == "lost" and s.budget.scope == "per_site"}
    for p in report.priorities:
        if p.site_lost:
            assert p.site in lost_sites
            assert all(p0 == p1 == 0.0 for o, subj, p0, p1 in p.subjects if subj == p.site)


@pytest.mark.parametrize("seed", [7])
def test_calibration_backtest_beats_the_baseline(seed):
    """Mid-month forecasts on a small simulated estate with known failure and repair rates:
    the model's Brier score must beat extrapolating the month-to-date attainment."""
    outcomes = backtest(SimParams(sites=60, months=2, seed=seed, **MARGINAL), QUICK, time_kpis_only=True)
    cal = score(outcomes)
    print("\n" + cal.table())
    assert len(outcomes) == 121
    assert cal.brier_model < cal.brier_baseline
    assert cal.brier_model < cal.brier_climatology


def test_burn_chart_observed_then_forecast_band(tmp_path):
    from oracle.engine.forecast import burn_chart

    terms, ev = write_case(tmp_path, [("2027-01-01T00:00:00Z", "D1", "available"),
                                      ("2027-01-04T10:00:00Z", "D1", "faulted"),
                                      ("2027-01-04T13:00:00Z", "D1", "available")])
    chart = burn_chart(terms, ev, "2027-01", AS_OF, "avail", "s1", QUICK, points=5)
    assert chart.budget_total == 30_240
    assert chart.observed[-1] == (AS_OF, 10_800) and chart.observed[0][1] == 0
    assert chart.forecast[0][1:] == (10_800, 10_800, 10_800)  # the band starts where the history ends
    for (_, lo, mid, hi), (_, _, mid_next, _) in zip(chart.forecast, chart.forecast[1:]):
        assert lo <= mid <= hi and mid <= mid_next
    assert chart.to_json_dict()["forecast"][-1]["t"] == "2027-02-01T00:00:00Z"
