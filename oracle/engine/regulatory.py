"""Regulatory KPIs, computed as the regulations define them (docs/terms.md §4.2), per port
(device) over any window, from the same segments the KPI engine cuts:

- `nevi_uptime` (US NEVI, 23 CFR 680.116(b)): minutes, ((D - (outage - excluded outage)) / D)
  with D = 525,600 for a port deployed the whole window (fewer minutes for a shorter history);
  up = available or in use, everything else (faulted, unavailable, offline, unknown, stale) is
  outage; excluded outage = outage inside an exclusion row (its `reason` is the cause).
- `pcpr_reliability` (UK PCPR 2023 reg 7): seconds inside the site's opening hours (its
  business hours); working = available, in use; not working = faulted, unavailable, offline;
  ineligible (OCPI UNKNOWN/BLOCKED, or no fresh status) counts as reliable (reg 7(3)(b)) or,
  with `ineligible: not_counted`, is left out.

A site's or the network's figure is the mean of its ports' exact ratios, rounded down once.
Pure (no I/O)."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from oracle.core.calendar import Interval, business_intervals, merge
from oracle.core.credit import BPS
from oracle.core.terms import Objective, Terms
from oracle.engine.timeline import Segments, Timeline, device_segments
from oracle.evidence.load import Evidence, Exclusion
from oracle.evidence.schema import AVAILABLE, FAULTED, IN_USE, OFFLINE, UNAVAILABLE, UNKNOWN

I64 = NDArray[np.int64]

NEVI_YEAR_MIN = 525_600  # the rule's denominator: 365 days of minutes, leap years included
MINUTE = 60


@dataclass(frozen=True)
class NeviPort:
    """One port's NEVI figure over a window. Seconds are exact; minutes are the rule's units:
    outage rounded up, excluded outage and deployed time rounded down (the figure is never
    overstated by rounding)."""

    device_id: str
    site_id: str
    deployed_s: int
    outage_s: int
    excluded_outage_s: int
    window_min: int  # D: min(525,600, deployed minutes)
    outage_min: int
    excluded_min: int

    @property
    def up_min(self) -> int:
        return max(0, self.window_min - (self.outage_min - self.excluded_min))

    @property
    def ratio(self) -> Fraction:
        return Fraction(self.up_min, self.window_min) if self.window_min else Fraction(1)

    @property
    def counted(self) -> bool:
        return self.window_min > 0


@dataclass(frozen=True)
class PcprPoint:
    """One charge point's (EVSE's) PCPR figure over a window: seconds inside its opening hours."""

    device_id: str
    site_id: str
    open_s: int  # deployed and open
    working_s: int
    not_working_s: int
    ineligible_s: int
    ineligible_reliable: bool

    @property
    def reliable_s(self) -> int:
        return self.working_s + (self.ineligible_s if self.ineligible_reliable else 0)

    @property
    def measured_s(self) -> int:
        return self.reliable_s + self.not_working_s

    @property
    def ratio(self) -> Fraction:
        return Fraction(self.reliable_s, self.measured_s) if self.measured_s else Fraction(1)

    @property
    def counted(self) -> bool:
        return self.measured_s > 0


Port = NeviPort | PcprPoint


@dataclass(frozen=True)
class ExcludedOutage:
    """An exclusion row as NEVI reads it: its cause and the outage it excused on each port
    (seconds and rule minutes, rounded down). Overlapping rows each list the time they cover."""

    start: int
    end: int
    scope: str
    cause: str
    line: int
    ports: tuple[tuple[str, int], ...]  # (device id, excused outage seconds), ports with any

    @property
    def excluded_s(self) -> int:
        return sum(s for _, s in self.ports)


@dataclass(frozen=True)
class Figure:
    """A subject's figure: good and counted seconds (NEVI: the rule's whole minutes x 60),
    summed over the ports for a site or the network, and the attainment (the mean of the
    counted ports' ratios, rounded down)."""

    good: int
    counted: int
    attainment_bps: int
    ports: int  # ports counted in the mean


@dataclass(frozen=True)
class Figures:
    """A regulatory objective's figures over a window: per device (device id order), per site
    (terms order) and for the network."""

    device: tuple[Figure, ...]
    site: tuple[Figure, ...]
    network: Figure


def segments(terms: Terms, ev: Evidence, w0: int, w1: int) -> Segments:
    """The devices' segments over [w0, w1) that the figures are read from (pass them to several
    objectives of one window to cut them once)."""
    return device_segments(ev, terms.stale_after, w0, w1)


def _between(tl: Timeline, key: I64, a: I64, b: I64) -> I64:
    return tl.at(key, b) - tl.at(key, a)


def _inside(tl: Timeline, key: I64, sg: Segments) -> I64:
    """`_between` over every segment: a device's segments are contiguous, so each boundary is
    evaluated once (half the lookups)."""
    if not len(sg.a):
        return np.zeros(0, dtype=np.int64)
    at_b = tl.at(key, sg.b)
    at_a = np.empty_like(at_b)
    at_a[1:] = at_b[:-1]
    first = np.flatnonzero(np.concatenate([[True], (sg.dev[1:] != sg.dev[:-1]) | (sg.a[1:] != sg.b[:-1])]))
    at_a[first] = tl.at(key[first], sg.a[first])
    return at_b - at_a


def _applies(x: Exclusion, site_id: str, device_id: str) -> bool:
    return x.scope == "*" or x.scope == f"site:{site_id}" or x.scope == f"device:{device_id}"


def _excluded_timeline(terms: Terms, ev: Evidence, w0: int, w1: int,
                       rows: tuple[Exclusion, ...] | None = None) -> Timeline:
    """Per device, the merged exclusion time (rows: all of the evidence's) inside [w0, w1)."""
    rows = ev.exclusions if rows is None else rows
    per: list[list[Interval]] = []
    for d, did in enumerate(ev.device_ids):
        sid = terms.sites[int(ev.device_site[d])].id
        per.append(merge((max(x.start, w0), min(x.end, w1)) for x in rows
                         if x.start < w1 and x.end > w0 and _applies(x, sid, did)))
    return Timeline.build(per, w0, w1)


def nevi_ports(terms: Terms, ev: Evidence, w0: int, w1: int, seg: Segments | None = None) -> tuple[NeviPort, ...]:
    """Every device's NEVI figure over [w0, w1), in device id order."""
    sg = segments(terms, ev, w0, w1) if seg is None else seg
    n = ev.n_devices
    length = sg.b - sg.a
    out_mask = (sg.code != AVAILABLE) & (sg.code != IN_USE)
    deployed = np.bincount(sg.dev, weights=length, minlength=n).astype(np.int64)
    outage = np.bincount(sg.dev[out_mask], weights=length[out_mask], minlength=n).astype(np.int64)
    excl = np.zeros(n, dtype=np.int64)
    if ev.exclusions and out_mask.any():
        tl = _excluded_timeline(terms, ev, w0, w1)
        d = sg.dev[out_mask]
        excl = np.bincount(d, weights=_between(tl, d, sg.a[out_mask], sg.b[out_mask]), minlength=n).astype(np.int64)
    return tuple(
        NeviPort(ev.device_ids[i], terms.sites[int(ev.device_site[i])].id, int(deployed[i]), int(outage[i]),
                 int(excl[i]), min(NEVI_YEAR_MIN, int(deployed[i]) // MINUTE), -(-int(outage[i]) // MINUTE),
                 int(excl[i]) // MINUTE)
        for i in range(n))


def pcpr_points(terms: Terms, ev: Evidence, w0: int, w1: int, ineligible: str = "reliable",
                seg: Segments | None = None) -> tuple[PcprPoint, ...]:
    """Every device's PCPR figure over [w0, w1) (inside its site's opening hours), in device id order."""
    sg = segments(terms, ev, w0, w1) if seg is None else seg
    n = ev.n_devices
    hours = Timeline.build([list(business_intervals(s.timezone, s.business_hours, w0, w1)) for s in terms.sites],
                           w0, w1)
    inside = _inside(hours, ev.device_site[sg.dev], sg)
    cls = np.zeros(6, dtype=np.int64)  # 0 working, 1 not working, 2 ineligible
    cls[[FAULTED, UNAVAILABLE, OFFLINE]] = 1
    cls[UNKNOWN] = 2
    per = np.bincount(sg.dev * 3 + cls[sg.code], weights=inside, minlength=3 * n).astype(np.int64).reshape(n, 3)
    working, against, unknown = per[:, 0], per[:, 1], per[:, 2]
    open_s = per.sum(axis=1)
    return tuple(
        PcprPoint(ev.device_ids[i], terms.sites[int(ev.device_site[i])].id, int(open_s[i]), int(working[i]),
                  int(against[i]), int(unknown[i]), ineligible == "reliable")
        for i in range(n))


def ports(terms: Terms, ev: Evidence, o: Objective, w0: int, w1: int,
          seg: Segments | None = None) -> tuple[Port, ...]:
    """The per-port figures of a regulatory objective over [w0, w1)."""
    if o.kpi == "nevi_uptime":
        return nevi_ports(terms, ev, w0, w1, seg)
    return pcpr_points(terms, ev, w0, w1, o.ineligible, seg)


def _good_counted(p: Port) -> tuple[int, int]:
    if isinstance(p, NeviPort):
        return p.up_min * MINUTE, p.window_min * MINUTE
    return p.reliable_s, p.measured_s


def ratio_bps(r: Fraction) -> int:
    return r.numerator * BPS // r.denominator


def figure(group: list[Port]) -> Figure:
    """The figure of a group of ports: the mean of the counted ports' ratios (10000 if none)."""
    counted = [p for p in group if p.counted]
    good = sum(_good_counted(p)[0] for p in counted)
    total = sum(_good_counted(p)[1] for p in counted)
    if not counted:
        return Figure(good, total, BPS, 0)
    mean = sum((p.ratio for p in counted), Fraction(0)) / len(counted)
    return Figure(good, total, ratio_bps(mean), len(counted))


def figures(terms: Terms, ev: Evidence, o: Objective, w0: int, w1: int, seg: Segments | None = None) -> Figures:
    """Every subject's figure of a regulatory objective over [w0, w1)."""
    all_ports = ports(terms, ev, o, w0, w1, seg)
    return Figures(tuple(figure([p]) for p in all_ports),
                   tuple(figure([p for p in all_ports if p.site_id == s.id]) for s in terms.sites),
                   figure(list(all_ports)))


def excluded_outages(terms: Terms, ev: Evidence, w0: int, w1: int) -> tuple[ExcludedOutage, ...]:
    """Each exclusion row overlapping [w0, w1) with the outage (NEVI classes) it excused per port."""
    sg = segments(terms, ev, w0, w1)
    out_mask = (sg.code != AVAILABLE) & (sg.code != IN_USE)
    d, a, b = sg.dev[out_mask], sg.a[out_mask], sg.b[out_mask]
    rows = []
    for x in sorted((x for x in ev.exclusions if x.start < w1 and x.end > w0),
                    key=lambda x: (x.start, x.end, x.scope, x.reason)):
        tl = _excluded_timeline(terms, ev, w0, w1, (x,))
        per = np.bincount(d, weights=_between(tl, d, a, b), minlength=ev.n_devices).astype(np.int64)
        hit = tuple((ev.device_ids[i], int(per[i])) for i in np.flatnonzero(per).tolist())
        rows.append(ExcludedOutage(x.start, x.end, x.scope, x.reason, x.line, hit))
    return tuple(rows)
