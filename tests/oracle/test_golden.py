"""Hand-worked cases from the seed article: 4 EV chargers at one car park in business hours
with a 3-day outage, and 8 railway ticket barriers with "no more than 1 broken"."""
from __future__ import annotations

from pathlib import Path

import pytest

from oracle.core.terms import parse_terms
from oracle.engine.kpi import compute_period
from oracle.evidence.load import load_evidence
from tests.oracle.conftest import AVAIL, DEVUP, MAXDOWN, UPTIME, site, terms_text, write_evidence

EPOCH_DEPLOY = "2026-01-01T00:00:00Z"


def _run(tmp_path: Path, terms_yaml: str, label: str, **evidence: object):
    terms = parse_terms(terms_yaml)
    ev = load_evidence(write_evidence(tmp_path / "ev", **evidence), terms)  # type: ignore[arg-type]
    return compute_period(terms, ev, label)


def test_car_park_three_day_outage_breaches_at_least_one_available(tmp_path: Path) -> None:
    # October 2026 in London: Thu 1st .. Sat 31st -> 22 weekdays. Business hours Mon-Fri
    # 08:00-18:00 = 36,000 s/day -> counted 22 * 36,000 = 792,000 s. (The DST change on
    # Sun 25th is outside business hours.)
    # All 4 chargers fault from Tue 13th 00:00 to Fri 16th 00:00 local (BST): 3 business
    # days = 108,000 s with no charger available -> good 684,000 s.
    # attainment = floor(10000 * 684000 / 792000) = 8636 < 9000 -> 100% of the 1000 USDC fee.
    # On Thu 1st 08:00-12:00 all 4 are in use: up (uptime unaffected) but not available:
    # 14,400 s more of site unavailability -> good 669,600 -> floor(8454.5) = 8454.
    chargers = [f"c{i}" for i in range(1, 5)]
    events = []
    for c in chargers:
        events += [("2026-10-01T00:00:00+01:00", c, "available"),
                   ("2026-10-01T08:00:00+01:00", c, "in_use"),
                   ("2026-10-01T12:00:00+01:00", c, "available"),
                   ("2026-10-13T00:00:00+01:00", c, "faulted"),
                   ("2026-10-16T00:00:00+01:00", c, "available")]
    terms = terms_text([site("carpark", '{mon-fri: "08:00-18:00"}')], (AVAIL, UPTIME, DEVUP))
    res = _run(tmp_path, terms, "2026-10", devices=[(c, "carpark", 1, EPOCH_DEPLOY, "") for c in chargers],
               events=events)
    avail = res.objective("avail").results[0]
    assert (avail.good_s, avail.counted_s, avail.attainment_bps, avail.met) == (669_600, 792_000, 8454, False)
    assert avail.credit == 1000 * 10**6
    # uptime: 4 devices * (792,000 - 108,000) good of 4 * 792,000 -> 8636 < 9500 -> tier 2: 30%
    up = res.objective("uptime").results[0]
    assert (up.good_s, up.counted_s, up.attainment_bps) == (4 * 684_000, 4 * 792_000, 8636)
    assert up.credit == 5000 * 10**6 * 3000 // 10000
    # per device: each 8636 < 9900 -> 50% of a 10 USDC device fee
    assert [r.subject for r in res.objective("devup").results] == chargers
    assert all(r.credit == 5 * 10**6 for r in res.objective("devup").results)
    assert res.total_credit == 1000 * 10**6 + 1500 * 10**6 + 4 * 5 * 10**6


def test_ticket_barriers_no_more_than_one_broken(tmp_path: Path) -> None:
    # November 2026, London (GMT all month): 30 days * 86,400 = 2,592,000 s, 24x7.
    # b1 faulted Nov 2 06:00 -> Nov 4 06:00 (48 h); b2 faulted Nov 3 06:00 -> 09:00 while b1
    # is broken: 2 down for 3 h = 10,800 s. b3 offline (missing_data: down) Nov 10 12:00 -> 13:00
    # and b4 faulted 12:30 -> 13:30: 2 down for 30 min = 1,800 s. b5 'unavailable' all of
    # Nov 20 with b6 faulted then: unavailable is excluded, not down -> only 1 down.
    # bad = 12,600 -> good 2,579,400 -> floor(10000 * 2579400 / 2592000) = 9951 >= 9500: met.
    barriers = [f"b{i}" for i in range(1, 9)]
    events = [("2026-10-31T00:00:00Z", b, "available") for b in barriers]
    events += [("2026-11-02T06:00:00Z", "b1", "faulted"), ("2026-11-04T06:00:00Z", "b1", "available"),
               ("2026-11-03T06:00:00Z", "b2", "faulted"), ("2026-11-03T09:00:00Z", "b2", "available"),
               ("2026-11-10T12:00:00Z", "b3", "offline"), ("2026-11-10T13:00:00Z", "b3", "available"),
               ("2026-11-10T12:30:00Z", "b4", "faulted"), ("2026-11-10T13:30:00Z", "b4", "available"),
               ("2026-11-20T00:00:00Z", "b5", "unavailable"), ("2026-11-21T00:00:00Z", "b5", "available"),
               ("2026-11-20T00:00:00Z", "b6", "faulted"), ("2026-11-21T00:00:00Z", "b6", "available")]
    terms = terms_text([site("station")], (MAXDOWN, DEVUP), first="2026-11")
    res = _run(tmp_path, terms, "2026-11", devices=[(b, "station", 1, EPOCH_DEPLOY, "") for b in barriers],
               events=events)
    md = res.objective("maxdown").results[0]
    assert (md.good_s, md.counted_s, md.attainment_bps, md.met, md.credit) == (2_579_400, 2_592_000, 9951, True, 0)
    dev = {r.subject: r for r in res.objective("devup").results}
    assert (dev["b1"].good_s, dev["b1"].counted_s) == (2_592_000 - 172_800, 2_592_000)
    # b5's maintenance day is removed from its counted time, not held against it
    assert (dev["b5"].good_s, dev["b5"].counted_s, dev["b5"].attainment_bps) == (2_505_600, 2_505_600, 10_000)


def test_exclusions_remove_versus_count_as_up(tmp_path: Path) -> None:
    # A device faulted all of November (24x7, 2,592,000 s) with a 10-day site exclusion.
    # remove: counted shrinks to 20 days, all bad -> 0 bps. count_as_up: the 10 days are good.
    ev = dict(devices=[("d1", "s", 1, EPOCH_DEPLOY, "")], events=[("2026-10-31T00:00:00Z", "d1", "faulted")],
              exclusions=[("2026-11-05T00:00:00Z", "2026-11-15T00:00:00Z", "site:s", "storm")])
    removed = _run(tmp_path / "a", terms_text([site("s")], (UPTIME,), first="2026-11"), "2026-11", **ev)
    up = _run(tmp_path / "b", terms_text([site("s")], (UPTIME,), first="2026-11", mode="count_as_up"), "2026-11", **ev)
    r, u = removed.objective("uptime").results[0], up.objective("uptime").results[0]
    assert (r.good_s, r.counted_s, r.attainment_bps) == (0, 1_728_000, 0)
    assert (u.good_s, u.counted_s, u.attainment_bps) == (864_000, 2_592_000, 3333)


def test_tickets_wall_and_business_clock(tmp_path: Path) -> None:
    # Targets: P1 respond within 1 h (wall), P2 within 4 business hours (Mon-Fri 09:00-17:00).
    # T1 P1 opened Mon Nov 2 10:00, responded 10:30 -> hit. T2 P1 opened 11:00, responded 12:30 -> miss.
    # T3 P2 opened Fri Nov 6 16:00, responded Mon Nov 9 11:00: 1 h Fri + 2 h Mon = 3 business h -> hit
    #    (on the wall clock it would be 67 h).
    # T4 P2 opened Mon Nov 30 16:30, never responded: by period end only 0.5 business h elapsed
    #    -> still pending, not counted.
    # T5 P1 opened Nov 30 20:00, never responded: 1 h passed by period end -> a miss.
    tickets = [("T1", "s", "P1", "2026-11-02T10:00:00Z", "2026-11-02T10:30:00Z", ""),
               ("T2", "s", "P1", "2026-11-02T11:00:00Z", "2026-11-02T12:30:00Z", ""),
               ("T3", "s", "P2", "2026-11-06T16:00:00Z", "2026-11-09T11:00:00Z", ""),
               ("T4", "s", "P2", "2026-11-30T16:30:00Z", "", ""),
               ("T5", "s", "P1", "2026-11-30T20:00:00Z", "", "")]
    obj = ('  - {id: resp, kpi: ticket_response, scope: per_site, target_bps: 9000, clock: business_hours,'
           ' targets: {P1: 1h, P2: 4h}, credits: [{below_bps: 9000, credit_bps: 500}]}')
    obj_wall = ('  - {id: wall, kpi: ticket_response, scope: estate, target_bps: 9000,'
                ' targets: {P1: 1h, P2: 4h}, credits: [{below_bps: 9000, credit_bps: 500}]}')
    terms = terms_text([site("s", '{mon-fri: "09:00-17:00"}')], (obj, obj_wall), first="2026-11")
    res = _run(tmp_path, terms, "2026-11", devices=[("d1", "s", 1, EPOCH_DEPLOY, "")], events=[], tickets=tickets)
    biz = res.objective("resp").results[0]
    # business clock: P1 T5 opened after hours -> 0 business seconds elapsed by period end: pending.
    assert (biz.good_s, biz.counted_s) == (2, 3)
    wall = res.objective("wall").results[0]
    # wall clock: T3 took 67 h (miss), T4 is 7.5 h old at period end (miss), T5 miss
    assert (wall.good_s, wall.counted_s) == (1, 5)


@pytest.mark.parametrize("label", ["2026-10", "2027-09"])
def test_every_period_of_the_term_is_computable(tmp_path: Path, label: str) -> None:
    terms = terms_text([site("s")], (UPTIME,))
    res = _run(tmp_path, terms, label, devices=[("d1", "s", 1, EPOCH_DEPLOY, "")], events=[])
    assert res.objective("uptime").results[0].attainment_bps == 0  # no telemetry: down


@pytest.mark.parametrize(("missing", "good"), [("down", 2_592_000 - 86_400), ("up", 2_592_000),
                                               ("exclude", 2_592_000 - 86_400)])
def test_an_unknown_event_counts_as_missing_data(tmp_path: Path, missing: str, good: int) -> None:
    # November 2026, 24x7: one device says `unknown` for one day (86,400 s), exactly like a day
    # without fresh data: down, up, or not counted, as the terms' missing_data says.
    events = [("2026-11-01T00:00:00Z", "d1", "available"), ("2026-11-10T00:00:00Z", "d1", "unknown"),
              ("2026-11-11T00:00:00Z", "d1", "available")]
    terms = terms_text([site("s")], (UPTIME,), missing=missing, first="2026-11")
    res = _run(tmp_path, terms, "2026-11", devices=[("d1", "s", 1, EPOCH_DEPLOY, "")], events=events)
    up = res.objective("uptime").results[0]
    counted = 2_592_000 - (86_400 if missing == "exclude" else 0)
    assert (up.good_s, up.counted_s) == (good if missing != "exclude" else counted, counted)
