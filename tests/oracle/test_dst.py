"""Calendar months and business hours across DST in both hemispheres, sites in other zones
than the agreement, and half-hour zones; each checked by hand and by the brute-force sampler."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from oracle.core.period import period_bounds
from oracle.core.terms import parse_terms
from oracle.engine.kpi import compute_period, measure_window
from oracle.evidence.load import load_evidence
from tests.oracle.bruteforce import brute_force
from tests.oracle.conftest import AVAIL, UPTIME, site, terms_text, write_evidence


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


@pytest.mark.parametrize("tz,label,start,end,hours", [
    ("Europe/London", "2026-03", "2026-03-01T00:00", "2026-03-31T23:00", 31 * 24 - 1),  # BST starts 29th
    ("Europe/London", "2026-10", "2026-09-30T23:00", "2026-11-01T00:00", 31 * 24 + 1),  # BST ends 25th
    ("Australia/Sydney", "2026-10", "2026-09-30T14:00", "2026-10-31T13:00", 31 * 24 - 1),  # AEDT starts 4th
    ("Australia/Sydney", "2026-04", "2026-03-31T13:00", "2026-04-30T14:00", 30 * 24 + 1),  # AEDT ends 5th
    ("Asia/Kolkata", "2026-10", "2026-09-30T18:30", "2026-10-31T18:30", 31 * 24),  # +05:30, no DST
    ("Australia/Adelaide", "2026-10", "2026-09-30T14:30", "2026-10-31T13:30", 31 * 24 - 1),  # +09:30 -> +10:30
    ("America/Santiago", "2026-09", "2026-09-01T04:00", "2026-10-01T03:00", 30 * 24 - 1),  # DST at 24:00 on 5 Sep
])
def test_period_bounds_follow_local_midnight(tz: str, label: str, start: str, end: str, hours: int) -> None:
    terms = parse_terms(terms_text([site("s")], (UPTIME,), tz=tz, first=label))
    s, e = period_bounds(terms, label)
    assert (s, e) == (utc(start), utc(end))
    assert e - s == hours * 3600


def _always_up(tmp_path: Path, terms_yaml: str, label: str):
    terms = parse_terms(terms_yaml)
    folder = write_evidence(tmp_path / "ev", devices=[("d1", "s", 1, "2020-01-01T00:00:00Z", "")],
                            events=[("2020-01-01T00:00:00Z", "d1", "available")])
    ev = load_evidence(folder, terms)
    return terms, ev, compute_period(terms, ev, label)


@pytest.mark.parametrize("label,expected", [
    # 01:00-02:00 every day, London. October: the hour happens twice on Sun 25th -> 30 h + 2 h.
    ("2026-10", 30 * 3600 + 7200),
    # March: the hour is skipped on Sun 29th -> 30 h + 0.
    ("2026-03", 30 * 3600),
])
def test_business_hours_in_the_repeated_and_skipped_hour(tmp_path: Path, label: str, expected: int) -> None:
    yaml = terms_text([site("s", '{daily: "01:00-02:00"}')], (UPTIME,), first="2026-03", stale="3000d")
    terms, ev, res = _always_up(tmp_path, yaml, label)
    r = res.objective("uptime").results[0]
    assert (r.good_s, r.counted_s) == (expected, expected)
    start, end = period_bounds(terms, label)
    assert brute_force(terms, ev, start, end, step=60)[("uptime", "*")] == (expected, expected)


def test_site_in_another_zone_than_the_agreement(tmp_path: Path) -> None:
    # Agreement in London; site in New York, Mon-Fri 09:00-17:00 local. November 2026 for London
    # is [Nov 1 00:00Z, Dec 1 00:00Z) = [Sat Oct 31 20:00 EDT, Mon Nov 30 19:00 EST): New York
    # weekdays Nov 2..Nov 30 = 21 days * 8 h = 604,800 s (US DST ends Sun Nov 1: no effect on hours).
    yaml = terms_text([site("s", '{mon-fri: "09:00-17:00"}', tz="America/New_York")], (AVAIL, UPTIME),
                      first="2026-11", stale="3000d")
    terms, ev, res = _always_up(tmp_path, yaml, "2026-11")
    assert res.objective("uptime").results[0].counted_s == 21 * 8 * 3600
    assert res.objective("avail").results[0].counted_s == 21 * 8 * 3600


def test_half_hour_zone_site_with_dst_southern_hemisphere(tmp_path: Path) -> None:
    # Adelaide (+09:30, +10:30 from Sun Oct 4 2026), agreement in Kolkata (+05:30). One week
    # around the change, checked against the per-minute brute force.
    yaml = terms_text([site("s", '{mon-fri: "08:30-17:45", sun: "01:30-03:30"}', tz="Australia/Adelaide")],
                      (AVAIL, UPTIME), tz="Asia/Kolkata", first="2026-10", stale="3000d")
    terms, ev, _ = _always_up(tmp_path, yaml, "2026-10")
    start, _ = period_bounds(terms, "2026-10")
    w1 = start + 7 * 86400
    ref = brute_force(terms, ev, start, w1, step=60)
    got = measure_window(terms, ev, start, w1)
    assert got[("uptime", "*")] == ref[("uptime", "*")]
    # Sun Oct 4: 02:00 -> 03:00 skipped, so the Sunday window is 1 h instead of 2 h.
    assert got[("uptime", "*")][1] == 5 * (9 * 3600 + 15 * 60) + 3600
