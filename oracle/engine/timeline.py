"""The engine's time arithmetic, shared by the KPI engine and the forecast: per-site (and
per-device) counted-time functions over business hours and exclusions, and every device's
timeline cut into segments of constant state. Pure, columnar (numpy); no per-second work."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from oracle.core.calendar import Interval, business_intervals, intersect, merge, subtract
from oracle.core.terms import Terms
from oracle.evidence.load import Evidence, window_events
from oracle.evidence.schema import AVAILABLE, FAULTED, IN_USE, OFFLINE, UNAVAILABLE, UNKNOWN

I64 = NDArray[np.int64]

# --------------------------------------------------------------------------- counted-time functions


_GRID = 3600  # Timeline lookup-table resolution, seconds


@dataclass(frozen=True)
class Timeline:
    """For each key, sorted disjoint intervals; `at(key, t)` is the measure of the key's
    intervals before t (a non-decreasing, piecewise-linear function of t).

    Evaluation uses a per-key hourly table: in an hour that is wholly inside or wholly
    outside the intervals the function is linear, so one table lookup answers; only hours
    with a boundary inside fall back to binary search."""

    w0: int
    span: int
    gstart: I64  # key * span + (start - w0), sorted
    length: I64
    cum: I64  # measure of the key's earlier intervals
    key: I64
    totals: I64  # per key
    base: I64  # (keys, hours + 1): value at each grid point
    slope: NDArray[np.int8]  # (keys, hours): 1 wholly inside, 0 wholly outside, -1 mixed

    @staticmethod
    def build(per_key: list[list[Interval]], w0: int, w1: int) -> Timeline:
        span = w1 - w0 + 1
        gs, ln, cm, ky = [], [], [], []
        totals = []
        for k, ivs in enumerate(per_key):
            acc = 0
            for s, e in ivs:
                gs.append(k * span + (s - w0))
                ln.append(e - s)
                cm.append(acc)
                ky.append(k)
                acc += e - s
            totals.append(acc)

        def a(x: list[int]) -> I64:
            return np.array(x, dtype=np.int64)

        nk = len(per_key)
        hours = (w1 - w0) // _GRID + 1
        tl = Timeline(w0, span, a(gs), a(ln), a(cm), a(ky), a(totals),
                      np.zeros((nk, hours + 1), dtype=np.int64), np.zeros((nk, hours), dtype=np.int8))
        if nk and len(gs):
            # Seconds of each grid cell [h*G, (h+1)*G) the key's intervals cover: the partial
            # cells at each interval's ends directly, the whole cells between via a difference
            # array. O(intervals + cells), no search per grid point.
            k_ = tl.key
            rs = tl.gstart - k_ * span
            re = rs + tl.length
            hs, he = rs // _GRID, (re - 1) // _GRID
            flat = k_ * hours
            one = hs == he
            cov = np.bincount(flat + hs, weights=np.where(one, re - rs, (hs + 1) * _GRID - rs),
                              minlength=nk * hours)
            cov += np.bincount((flat + he)[~one], weights=(re - he * _GRID)[~one], minlength=nk * hours)
            many = he > hs + 1
            full = np.bincount((flat + hs + 1)[many], minlength=nk * hours + 1)[:nk * hours].astype(np.int64)
            full -= np.bincount((flat + he)[many], minlength=nk * hours)
            cov = cov.astype(np.int64).reshape(nk, hours) + np.cumsum(full.reshape(nk, hours), axis=1) * _GRID
            np.cumsum(cov, axis=1, out=tl.base[:, 1:])
            grid = np.minimum(w0 + np.arange(hours + 1, dtype=np.int64) * _GRID, w1)
            width = np.diff(grid)
            tl.slope[:] = np.where(cov == 0, 0, np.where(cov == width, 1, -1))
        return tl

    @property
    def empty(self) -> bool:
        return len(self.gstart) == 0

    def _search(self, key: I64, t: I64) -> I64:
        p = key * self.span + (t - self.w0)
        j = np.searchsorted(self.gstart, p, side="right") - 1
        jc = np.maximum(j, 0)
        ok = (j >= 0) & (self.key[jc] == key)
        return np.where(ok, self.cum[jc] + np.minimum(p - self.gstart[jc], self.length[jc]), 0)

    def at(self, key: I64, t: I64) -> I64:
        if self.empty:
            return np.zeros(len(t), dtype=np.int64)
        rel = t - self.w0
        h = np.minimum(rel // _GRID, self.slope.shape[1] - 1)
        sl = self.slope[key, h]
        out = self.base[key, h] + np.where(sl == 1, rel - h * _GRID, 0)
        mixed = np.flatnonzero(sl < 0)
        if len(mixed):
            out[mixed] = self._search(key[mixed], t[mixed])
        return np.asarray(out, dtype=np.int64)

    def between(self, key: int, a: int, b: int) -> int:
        if b <= a:
            return 0
        ka = np.array([key, key], dtype=np.int64)
        v = self.at(ka, np.array([a, b], dtype=np.int64))
        return int(v[1] - v[0])


@dataclass(frozen=True)
class Clock:
    """Counted (`C`) and forced-good (`F`) time per timeline key. Keys 0..S-1 are sites; keys
    from S on belong to devices with their own `device:` exclusions."""

    counted: Timeline
    forced: Timeline
    device_key: I64  # per device


def counted_clock(terms: Terms, ev: Evidence, start: int, end: int) -> Clock:
    """Counted and forced-good time of every site (and of every device with its own
    exclusions) over [start, end): business hours, minus (`remove`) or flagged good
    (`count_as_up`) by exclusions. Public: the forecast reads the same clock."""
    def clip(xs: list[Interval]) -> list[Interval]:
        return merge((max(s, start), min(e, end)) for s, e in xs if s < end and e > start)

    everywhere = [(x.start, x.end) for x in ev.exclusions if x.kind == "*"]
    by_scope: dict[str, list[Interval]] = {}
    for x in ev.exclusions:
        by_scope.setdefault(x.scope, []).append((x.start, x.end))
    remove = terms.exclusion_mode == "remove"
    counted: list[list[Interval]] = []
    forced: list[list[Interval]] = []
    for site in terms.sites:
        hours = list(business_intervals(site.timezone, site.business_hours, start, end))
        excl = clip(everywhere + by_scope.get(f"site:{site.id}", []))
        counted.append(subtract(hours, excl) if remove else hours)
        forced.append([] if remove else intersect(hours, excl))
    device_key = ev.device_site.copy()
    index = {d: i for i, d in enumerate(ev.device_ids)}
    per_device: dict[int, list[Interval]] = {}
    for x in ev.exclusions:
        if x.kind == "device":
            per_device.setdefault(index[x.target], []).append((x.start, x.end))
    for d, xs in sorted(per_device.items()):
        s = int(ev.device_site[d])
        excl = clip(xs)
        device_key[d] = len(counted)
        if remove:
            counted.append(subtract(counted[s], excl))
            forced.append([])
        else:
            counted.append(counted[s])
            forced.append(merge(forced[s] + intersect(counted[s], excl)))
    return Clock(Timeline.build(counted, start, end), Timeline.build(forced, start, end), device_key)


# --------------------------------------------------------------------------- device segments


@dataclass(frozen=True)
class Segments:
    """Per device, contiguous segments [a, b) of constant state code covering the device's
    deployed time inside the window; sorted by (device, a)."""

    dev: I64
    a: I64
    b: I64
    code: NDArray[np.int8]


def device_segments(ev: Evidence, stale: int, w0: int, w1: int) -> Segments:
    """Every device's timeline over [w0, w1) as segments of constant state code (UNKNOWN where
    no fresh event), clipped to its deployment. Public: the forecast fits on the same segments."""
    d, t, s = window_events(ev, w0, w1)
    n, nd = len(d), ev.n_devices
    lo = np.maximum(ev.deployed, w0)  # each device's pieces are clipped to [lo, hi)
    hi = np.minimum(ev.retired, w1)
    count = np.bincount(d, minlength=nd)
    first = np.zeros(nd + 1, dtype=np.int64)  # index of each device's first event (events sorted by device)
    np.cumsum(count, out=first[1:])
    has = count > 0
    # Pieces, per device: a lead one (unknown from the window start to the first event), then
    # per event E (its state until fresh_end = min(next event, ts + stale)) and G (unknown
    # from fresh_end to the next event). Each is clipped to the device's deployment in the
    # window, and the non-empty ones are written straight to their place in the output.
    la = lo
    lb = np.minimum(np.where(has, t[np.minimum(first[:-1], max(n - 1, 0))] if n else w1, w1), hi)
    l_ok = la < lb
    nxt = np.empty(n, dtype=np.int64)
    nxt[:-1] = t[1:]
    nxt[first[1:][has] - 1] = 2**62  # each device's last event
    hi_e = hi[d]
    lo_e = lo[d]
    fe = t + stale
    np.minimum(fe, nxt, out=fe)
    ga = np.maximum(fe, lo_e)
    ea = np.maximum(t, lo_e, out=lo_e)  # in place: 10M-long temporaries cost fresh pages
    eb = np.minimum(fe, hi_e, out=fe)
    gb = np.minimum(nxt, hi_e, out=nxt)
    del hi_e
    e_ok, g_ok = ea < eb, ga < gb
    # output position of E_i: leads of devices <= d, plus event pieces before i
    per_event = e_ok.astype(np.int64)
    per_event += g_ok
    pos_e = np.cumsum(per_event)
    tot_e = int(pos_e[-1]) if n else 0
    pos_e -= per_event  # exclusive: the event pieces before i
    del per_event
    l_cum = np.cumsum(l_ok)
    total = (int(l_cum[-1]) if nd else 0) + tot_e
    pos_l = l_cum - 1
    pos_l += np.concatenate([pos_e, [tot_e]])[first[:-1]]  # event pieces of the devices before
    pos_e += l_cum[d]
    pos_g = pos_e + e_ok
    trash = total  # one spare slot takes every empty piece
    np.copyto(pos_l, trash, where=~l_ok)
    np.copyto(pos_g, trash, where=~g_ok)
    np.copyto(pos_e, trash, where=~e_ok)
    out_a = np.empty(total + 1, dtype=np.int64)
    out_b = np.empty(total + 1, dtype=np.int64)
    out_c = np.empty(total + 1, dtype=np.int8)
    out_d = np.empty(total + 1, dtype=np.int64)
    out_a[pos_l], out_b[pos_l], out_c[pos_l], out_d[pos_l] = la, lb, UNKNOWN, np.arange(nd, dtype=np.int64)
    out_a[pos_e], out_b[pos_e], out_c[pos_e], out_d[pos_e] = ea, eb, s, d
    out_a[pos_g], out_b[pos_g], out_c[pos_g], out_d[pos_g] = ga, gb, UNKNOWN, d
    return Segments(out_d[:total], out_a[:total], out_b[:total], out_c[:total])


def class_tables(terms: Terms) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """Lookup tables state code -> up / down / excluded, under the terms' telemetry settings."""
    up = np.zeros(6, dtype=bool)
    down = np.zeros(6, dtype=bool)
    excl = np.zeros(6, dtype=bool)
    up[[AVAILABLE, IN_USE]] = True
    down[FAULTED] = True
    (down if terms.maintenance_state == "down" else excl)[UNAVAILABLE] = True
    missing = {"down": down, "up": up, "exclude": excl}[terms.missing_data]
    missing[[OFFLINE, UNKNOWN]] = True
    return up, down, excl
