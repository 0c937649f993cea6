"""The simulator writes estates the real KPI engine accepts, deterministically, with the
behaviour the demo and the forecaster rely on (bad sites miss, weekend repairs are slower,
devices come and go mid-month)."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from oracle.core.period import period_bounds, period_labels
from oracle.evidence.schema import FAULTED, IN_USE, NO_END, OFFLINE
from oracle.sim.simulate import SimError, SimParams, simulate, simulate_estate
from slacomp.cli import main as cli_main

from .conftest import MAIN, Run, run_simulation

FILES = ("terms.yaml", "evidence/devices.csv", "evidence/events.csv", "evidence/exclusions.csv",
         "evidence/tickets.csv", "truth.json", "faults.csv")
SMALL = SimParams(sites=4, devices_per_site=3, months=2, seed=5, bad_sites=1)


def _local(df: pl.DataFrame, col: str, sites: pl.DataFrame) -> pl.DataFrame:
    """Add `hour` and `offday` (Sat/Sun/holiday) of `col` in each row's site zone."""
    parts = []
    for (tz,), part in df.join(sites, on="site_id").group_by("tz", maintain_order=True):
        local = pl.col(col).str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC").dt.convert_time_zone(str(tz))
        parts.append(part.with_columns(local.dt.hour().alias("hour"), local.dt.weekday().alias("wd"),
                                       local.dt.date().alias("day")))
    out = pl.concat(parts)
    holidays = [date(y, m, d) for y in (2026, 2027) for m, d in ((1, 1), (5, 1), (12, 25), (12, 26))]
    return out.with_columns(((pl.col("wd") >= 6) | pl.col("day").is_in(holidays)).alias("offday"))


def _sites(run: Run) -> pl.DataFrame:
    return pl.DataFrame({"site_id": [s.id for s in run.terms.sites], "tz": [s.timezone for s in run.terms.sites]})


# --------------------------------------------------------------------------- engine round trip


def test_every_month_of_the_term_computes_with_the_engine(main_run: Run) -> None:
    labels = period_labels(main_run.terms)
    assert labels == ["2026-10", "2026-11", "2026-12"]
    assert main_run.terms.first_period == "2026-10" and main_run.terms.periods == 3
    for label in labels:
        result = main_run.results[label]
        assert {o.id for o in result.objectives} == {"avail", "maxdown", "uptime", "response", "resolution"}
        counted = sum(r.counted_s for o in result.objectives for r in o.results)
        assert counted > 0
    assert len(main_run.evidence.tickets) > 0 and len(main_run.evidence.exclusions) > 0


@pytest.mark.parametrize("profile", ["ev_charger", "ticket_barrier", "smart_meter"])
def test_every_profile_produces_evidence_the_engine_loads(tmp_path: Path, profile: str) -> None:
    run = run_simulation(tmp_path, SimParams(sites=5, devices_per_site=4, months=2, seed=2, profile=profile,
                                             bad_sites=1))
    assert run.truth["params"]["profile"] == profile
    for label, result in run.results.items():
        assert result.label == label
        assert run.met(label, "avail")[run.truth["bad_sites"][0]] is False


def test_healthy_devices_never_look_unknown(main_run: Run) -> None:
    """Between two events of a device the gap exceeds stale_after only after an `offline`
    (a drop-out): heartbeats alone keep every device fresh."""
    ev = main_run.evidence
    same = ev.ev_device[1:] == ev.ev_device[:-1]
    gap = ev.ev_ts[1:] - ev.ev_ts[:-1]
    stale = same & (gap >= main_run.terms.stale_after)
    assert stale.any()  # long drop-outs exist ...
    assert (ev.ev_state[:-1][stale] == OFFLINE).all()  # ... and nothing else goes silent
    hb = main_run.truth["telemetry"]["heartbeat_s"]
    assert np.median(gap[same]) <= hb


def test_devices_emit_only_while_deployed_and_one_state_per_instant(main_run: Run) -> None:
    ev = main_run.evidence
    dev = ev.ev_device
    assert (ev.ev_ts >= ev.deployed[dev]).all() and (ev.ev_ts < ev.retired[dev]).all()
    events = main_run.csv("events.csv")
    assert events.select("ts", "device_id").is_duplicated().sum() == 0
    assert events["ts"].str.ends_with("Z").all()
    assert events["ts"].to_list() == sorted(events["ts"].to_list())  # a time-ordered stream


# --------------------------------------------------------------------------- determinism


def _bytes(folder: Path) -> dict[str, bytes]:
    return {f: (folder / f).read_bytes() for f in FILES}


def test_same_seed_writes_byte_identical_files(tmp_path: Path) -> None:
    simulate(SMALL, tmp_path / "a")
    simulate(SMALL, tmp_path / "b")
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")


def test_different_seed_writes_different_estates(tmp_path: Path) -> None:
    simulate(SMALL, tmp_path / "a")
    simulate(SimParams(**{**SMALL.__dict__, "seed": SMALL.seed + 1}), tmp_path / "b")
    a, b = _bytes(tmp_path / "a"), _bytes(tmp_path / "b")
    for name in ("evidence/events.csv", "evidence/tickets.csv", "faults.csv", "truth.json"):
        assert a[name] != b[name], name


# --------------------------------------------------------------------------- SLA behaviour


def test_bad_sites_miss_availability_while_most_others_meet(main_run: Run) -> None:
    bad = set(main_run.truth["bad_sites"])
    assert len(bad) == MAIN.bad_sites
    for label in main_run.results:
        met = main_run.met(label, "avail")
        assert not any(met[s] for s in bad), label
        others = [met[s] for s in met if s not in bad]
        assert sum(others) >= 0.9 * len(others), label
        assert main_run.results[label].total_credit > 0


def test_without_bad_sites_the_estate_meets_its_availability(tmp_path: Path) -> None:
    run = run_simulation(tmp_path, SimParams(sites=10, devices_per_site=4, months=1, seed=3))
    assert all(run.met("2026-10", "avail").values())
    assert all(run.met("2026-10", "maxdown").values())


def test_weekend_and_holiday_repairs_take_longer(main_run: Run) -> None:
    truth = main_run.truth
    assert truth["repairs"]["mttr_weekend_h"] > truth["repairs"]["mttr_weekday_h"]
    real = truth["realized"]
    assert real["mean_repair_h_weekend_or_holiday"] > 1.5 * real["mean_repair_h_weekday"]
    # The same seen from the evidence: P2 tickets (one per device fault) opened on a day off
    # take longer to resolve.
    t = main_run.csv("tickets.csv").filter((pl.col("severity") == "P2") & (pl.col("resolved_at") != ""))
    t = _local(t, "opened_at", _sites(main_run))
    hours = (pl.col("resolved_at").str.to_datetime("%Y-%m-%dT%H:%M:%SZ")
             - pl.col("opened_at").str.to_datetime("%Y-%m-%dT%H:%M:%SZ")).dt.total_seconds() / 3600
    by = t.with_columns(hours.alias("h")).group_by("offday").agg(pl.col("h").mean(), pl.len())
    mean = {row["offday"]: row["h"] for row in by.iter_rows(named=True)}
    assert by["len"].min() >= 20
    assert mean[True] > 1.5 * mean[False]


def test_occupancy_follows_the_time_of_day(main_run: Run) -> None:
    events = _local(main_run.csv("events.csv").join(main_run.csv("devices.csv").select("device_id", "site_id"),
                                                    on="device_id"), "ts", _sites(main_run))
    share = events.group_by("hour").agg((pl.col("state") == "in_use").mean().alias("busy"))
    busy = dict(zip(share["hour"].to_list(), share["busy"].to_list()))
    assert busy[18] > 0.25 and busy[3] < 0.1
    assert int(IN_USE) == 1 and int(FAULTED) == 2  # the engine's state codes the simulator mirrors


def test_retirements_and_new_deployments_happen_mid_month(main_run: Run) -> None:
    ev = main_run.evidence
    first, _ = period_bounds(main_run.terms, "2026-10")
    retired = ev.retired[ev.retired < NO_END]
    deployed = ev.deployed[ev.deployed >= first]
    assert len(retired) >= MAIN.months and len(deployed) >= 2 * MAIN.months
    for label in period_labels(main_run.terms):
        start, end = period_bounds(main_run.terms, label)
        mid = (start + 2 * 86_400, end - 2 * 86_400)
        assert ((retired > mid[0]) & (retired < mid[1])).any(), label
        assert ((deployed > mid[0]) & (deployed < mid[1])).any(), label
    # A replacement shows up in the engine's per-device view only from its deployment on.
    new = np.flatnonzero(ev.deployed >= first)
    dev = ev.ev_device
    for d in new[:5].tolist():
        assert ev.ev_ts[dev == d].min() == ev.deployed[d]


def test_planned_maintenance_is_declared_and_reported_unavailable(main_run: Run) -> None:
    ex = [x for x in main_run.evidence.exclusions if x.kind == "site"]
    assert ex and all(x.reason == "planned maintenance" for x in ex)
    ev = main_run.evidence
    site_of = ev.device_site[ev.ev_device]
    x = ex[0]
    site = [s.id for s in main_run.terms.sites].index(x.target)
    inside = (site_of == site) & (ev.ev_ts >= x.start) & (ev.ev_ts < x.end) & (ev.ev_state != OFFLINE)
    assert inside.any() and (ev.ev_state[inside] == 3).all()  # unavailable


# --------------------------------------------------------------------------- ground truth


def test_truth_exposes_known_failure_and_repair_rates(main_run: Run) -> None:
    truth = main_run.truth
    rates = truth["failures"]["per_device_rate_per_hour"]
    assert set(rates) == set(main_run.evidence.device_ids)
    assert truth["failures"]["rate_per_device_hour"] == pytest.approx(1 / 1000)
    for key in ("mttr_weekday_h", "mttr_weekend_h", "holidays", "distribution"):
        assert key in truth["repairs"]
    # The draw matches the declared rates: faults per device-hour within 25% of the mean
    # declared rate (weighted by deployed hours).
    ev = main_run.evidence
    t0, t1 = (int(np.datetime64(truth["horizon"][k].rstrip("Z"), "s").astype(np.int64)) for k in ("start", "end"))
    hours = (np.minimum(ev.retired, t1) - np.maximum(ev.deployed, t0)).clip(0) / 3600
    expected = float(sum(rates[d] * h for d, h in zip(ev.device_ids, hours)))
    assert truth["realized"]["device_faults"] == pytest.approx(expected, rel=0.25)
    faults = pl.read_csv(main_run.out / "faults.csv")
    assert (faults["cause"] == "device").sum() == truth["realized"]["device_faults"]
    assert {o["site"] for o in truth["outages"]} == set(truth["bad_sites"])


def test_failure_rate_knob_scales_faults(tmp_path: Path) -> None:
    base = SimParams(sites=6, devices_per_site=4, months=1, seed=4)
    low = simulate_estate(base)
    high = simulate_estate(SimParams(**{**base.__dict__, "failure_rate": 10 / 1000}))
    n_low, n_high = ((s.faults["cause"] == 0).sum() for s in (low, high))
    assert n_high > 5 * n_low


# --------------------------------------------------------------------------- CLI


def test_cli_writes_terms_evidence_and_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim"
    code = cli_main(["simulate", "--out", str(out), "--sites", "3", "--devices-per-site", "2", "--months", "1",
                     "--start", "2027-01", "--seed", "8", "--profile", "smart_meter", "--failure-rate", "0.002",
                     "--bad-sites", "1"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["events"] > 0 and len(summary["bad_sites"]) == 1
    for f in FILES:
        assert (out / f).is_file(), f
    assert cli_main(["kpi", str(out / "terms.yaml"), "--evidence", str(out / "evidence"), "--period", "2027-01"]) == 0


@pytest.mark.parametrize("argv, field", [
    (["--sites", "0"], "--sites"),
    (["--bad-sites", "11"], "--bad-sites"),
    (["--start", "2026-13"], "--start"),
    (["--failure-rate", "-1"], "--failure-rate"),
])
def test_cli_rejects_bad_parameters_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      argv: list[str], field: str) -> None:
    assert cli_main(["simulate", "--out", str(tmp_path), *argv]) == 2
    assert field in capsys.readouterr().err
    with pytest.raises(SimError):
        simulate(SimParams(sites=0), tmp_path)
