"""Forecast of the period's outcome: the probability that each subject meets its target by
period end, a 90% interval of its final attainment and its expected credit, from a stated
statistical model fitted on the evidence before the forecast instant.

The model:

- A device alternates between *up* and *down spells* (runs of the terms' "down" class:
  faulted, and offline/unknown with ``missing_data: down``). Spells start as a Poisson
  process while the device is deployed, at a device rate λ_d with a two-level gamma prior
  (estate → site → device, empirical Bayes by the method of moments) updated with the
  device's spells and up-time in the fit window (default 90 days). Each Monte Carlo run
  draws λ_d from its posterior Gamma(k + n_d, k / m_site + T_d), so rate uncertainty is in
  the forecast.
- Spell durations are resampled from the completed spells of the fit window, separately
  for spells that start on a working day and on a weekend or holiday (site local time;
  holidays are given as `ForecastParams.holidays`). A spell still open at the forecast
  instant with age A lasts D − A more, D drawn from the durations longer than A (or
  A·Exp(1) when fewer than 5 are).
- ``site_availability`` also needs devices that are up but in use: the in-use share q of
  up time per (working/off day, local hour) is estimated from the fit window; given the
  number of down devices, a counted second is bad with probability P(Binomial(n_up, 1 − q)
  < min_available), integrated over the remaining counted time (its expectation: sessions
  are short against the horizon).
- ``site_max_down`` is bad while more than max_down devices are down; ``device_uptime``
  while the device is down. The remaining counted time (business hours, scheduled
  exclusions) is the KPI engine's own counted-time function.
- Ticket KPIs: future decided tickets ~ Poisson(rate · remaining time), each good with
  probability p ~ Beta(1 + good, 1 + bad) of the fit window (beta-binomial).

Final attainment per run = (good so far + remaining counted − simulated bad) ÷ (counted so
far + remaining counted), floored to basis points as the engine does."""
from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np
from numpy.typing import NDArray

from oracle.core.calendar import iso_utc, offset_pieces, zone
from oracle.core.credit import BPS
from oracle.core.period import period_bounds
from oracle.core.terms import Objective, Terms
from oracle.engine.budget import TICKET_KPIS, BudgetReport, SubjectBudget, budget_from_period
from oracle.engine.kpi import ESTATE, class_tables, compute_period, counted_clock, device_segments, measure_window
from oracle.evidence.load import AVAILABLE, IN_USE, Evidence, window_events

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
HOUR, DAY = 3600, 86_400
MIN_TAIL = 5  # durations needed above an open spell's age to resample its rest


@dataclass(frozen=True)
class ForecastParams:
    """Knobs of the forecast: Monte Carlo runs, seed, fit window and holiday calendar."""

    sims: int = 1000
    seed: int = 0
    history_days: float = 90.0
    holidays: tuple[str, ...] = ()  # ISO dates treated like weekends (local date at each site)
    at_risk_below: float = 0.9  # status "at_risk" when P(meet) is below this


# --------------------------------------------------------------------------- local time


class LocalTime:
    """Local hour and working/off day of UTC instants at many sites (vectorised)."""

    def __init__(self, zones: Sequence[str], t0: int, t1: int, holidays: Iterable[str] = ()) -> None:
        self.zones = tuple(zones)
        self.pieces = []
        for name in self.zones:
            p = offset_pieces(zone(name), t0 - 2 * DAY, t1 + 2 * DAY)
            self.pieces.append((np.array([a for a, _, _ in p], np.int64), np.array([o for _, _, o in p], np.int64)))
        epoch = date(1970, 1, 1).toordinal()
        self.holidays = np.array(sorted(date.fromisoformat(h).toordinal() - epoch for h in holidays), np.int64)

    def hour_offday(self, t: I64, zone_idx: I64) -> tuple[I64, NDArray[np.bool_]]:
        wall = t.copy()
        for z, (starts, offs) in enumerate(self.pieces):
            m = zone_idx == z
            if m.any():
                wall[m] += offs[np.clip(np.searchsorted(starts, t[m], side="right") - 1, 0, len(offs) - 1)]
        day = wall // DAY
        off = ((day + 3) % 7 >= 5) | np.isin(day, self.holidays)  # 1970-01-01 was a Thursday
        return (wall % DAY) // HOUR, off


def _site_zones(terms: Terms) -> tuple[list[str], I64]:
    zones = sorted({s.timezone for s in terms.sites})
    return zones, np.array([zones.index(s.timezone) for s in terms.sites], np.int64)


def evidence_before(ev: Evidence, as_of: int) -> Evidence:
    """The evidence as it stood at `as_of`: events before it, tickets opened before it with
    later responses/resolutions unknown. Devices and exclusions are schedules, kept whole."""
    dev, ts, state = window_events(ev, -(2**62), as_of)  # per-device slices, no full-length mask

    def cut(t: int | None) -> int | None:
        return None if t is None or t > as_of else t

    tickets = tuple(replace(t, responded=cut(t.responded), resolved=cut(t.resolved))
                    for t in ev.tickets if t.opened < as_of)
    return replace(ev, ev_device=dev, ev_ts=ts, ev_state=state, tickets=tickets)


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class FittedModel:
    """Parameters fitted on the window [fit_from, fit_to). Rates are per second."""

    fit_from: int
    fit_to: int
    shape: F64  # per device: posterior Gamma shape of the spell rate
    rate: F64  # per device: posterior Gamma rate (seconds of up-time)
    durations_work: F64  # completed spells starting on a working day, sorted (s)
    durations_off: F64  # ... on a weekend or holiday
    open_age: I64  # per device: age at fit_to of its open down spell, -1 if up
    open_offday: NDArray[np.bool_]
    occupancy: F64  # (2, 24): in-use share of up time, [working/off day, local hour]
    estate_rate_per_h: float
    device_shape: float
    spells: int

    def to_json_dict(self) -> dict[str, Any]:
        def mean_h(x: F64) -> float | None:
            return round(float(x.mean()) / HOUR, 3) if len(x) else None

        return {"fit_from": iso_utc(self.fit_from), "fit_to": iso_utc(self.fit_to), "spells": self.spells,
                "spell_rate_per_device_hour": round(self.estate_rate_per_h, 6),
                "device_rate_gamma_shape": round(self.device_shape, 3),
                "completed_spells": {"working_day": len(self.durations_work), "off_day": len(self.durations_off)},
                "mean_spell_h": {"working_day": mean_h(self.durations_work), "off_day": mean_h(self.durations_off)},
                "open_spells": int((self.open_age >= 0).sum())}


def _gamma_prior(n: F64, t: F64, mean: float) -> tuple[float, float]:
    """Gamma(shape, rate) of rates across units by the method of moments (n events in t)."""
    ok = t > 0
    if ok.sum() < 2 or mean <= 0:
        return 1.0, 1.0 / max(mean, 1e-12)
    r = n[ok] / t[ok]
    between = float(r.var() - np.mean(mean / t[ok]))
    shape = float(np.clip(mean * mean / between, 0.3, 100.0)) if between > 0 else 100.0
    return shape, shape / mean


def fit_model(terms: Terms, ev: Evidence, as_of: int, params: ForecastParams, local: LocalTime,
              site_zone: I64) -> FittedModel:
    """Fit the spell, duration and occupancy model on the evidence before `as_of`."""
    nd = ev.n_devices
    first = int(ev.ev_ts.min()) if len(ev.ev_ts) else as_of - DAY
    h0 = min(max(as_of - int(params.history_days * DAY), first), as_of - 1)
    seg = device_segments(ev, terms.stale_after, h0, as_of)
    _, down_tbl, _ = class_tables(terms)
    down = down_tbl[seg.code]
    dd, da, db = seg.dev[down], seg.a[down], seg.b[down]
    new = np.ones(len(dd), bool)
    new[1:] = (dd[1:] != dd[:-1]) | (da[1:] != db[:-1])
    starts = np.flatnonzero(new)
    sp_dev, sp_a = dd[starts], da[starts]
    sp_b = np.maximum.reduceat(db, starts) if len(starts) else np.zeros(0, np.int64)
    w0 = np.maximum(ev.deployed, h0)
    w1 = np.minimum(ev.retired, as_of)
    left = sp_a <= w0[sp_dev]
    right = sp_b >= w1[sp_dev]
    open_age = np.full(nd, -1, np.int64)
    is_open = right & (ev.retired[sp_dev] > as_of)
    open_age[sp_dev[is_open]] = as_of - sp_a[is_open]
    dev_zone = site_zone[ev.device_site]
    open_offday = np.zeros(nd, bool)
    if is_open.any():
        open_offday[sp_dev[is_open]] = local.hour_offday(sp_a[is_open], dev_zone[sp_dev[is_open]])[1]
    n = np.bincount(sp_dev[~left], minlength=nd).astype(float)
    down_t = np.bincount(sp_dev, weights=(sp_b - sp_a), minlength=nd)
    expo = np.maximum((w1 - w0).astype(float) - down_t, 0.0)
    done = ~left & ~right
    dur = (sp_b - sp_a)[done].astype(float)
    off = local.hour_offday(sp_a[done], dev_zone[sp_dev[done]])[1] if done.any() else np.zeros(0, bool)
    work_d, off_d = np.sort(dur[~off]), np.sort(dur[off])
    if len(off_d) < 20 or len(work_d) < 20:  # too few to tell apart: one pooled distribution
        work_d = off_d = np.sort(dur) if len(dur) else np.array([float(HOUR)])
    # Two-level empirical Bayes: estate -> site -> device.
    mean = float(n.sum() / expo.sum()) if expo.sum() > 0 else 1.0 / (1000 * HOUR)
    mean = max(mean, 1e-9)
    ns = len(terms.sites)
    site_n = np.bincount(ev.device_site, weights=n, minlength=ns)
    site_t = np.bincount(ev.device_site, weights=expo, minlength=ns)
    s_shape, s_rate = _gamma_prior(site_n, site_t, mean)
    m_site = (s_shape + site_n) / (s_rate + site_t)
    m_dev = m_site[ev.device_site]
    ok = expo > DAY
    if ok.sum() >= 2:
        x = n[ok] / expo[ok] / m_dev[ok]
        between = float(x.var() - np.mean(1.0 / (m_dev[ok] * expo[ok])))
        k = float(np.clip(1.0 / between, 0.5, 100.0)) if between > 0 else 100.0
    else:
        k = 100.0
    # Occupancy: in-use share of up time by (off day, local hour), at each segment's midpoint.
    occ = np.zeros((2, 24))
    up = (seg.code == AVAILABLE) | (seg.code == IN_USE)
    if up.any():
        mid = (seg.a[up] + seg.b[up]) // 2
        hour, offd = local.hour_offday(mid, dev_zone[seg.dev[up]])
        cell = offd.astype(np.int64) * 24 + hour
        w = (seg.b[up] - seg.a[up]).astype(float)
        tot = np.bincount(cell, weights=w, minlength=48)
        use = np.bincount(cell, weights=w * (seg.code[up] == IN_USE), minlength=48)
        occ = np.where(tot > 0, use / np.maximum(tot, 1), 0.0).reshape(2, 24)
    return FittedModel(h0, as_of, k + n, k / m_dev + expo, work_d, off_d, open_age, open_offday, occ,
                       mean * HOUR, k, len(sp_dev))


def fit(terms: Terms, evidence: Evidence, as_of: int, params: ForecastParams = ForecastParams()) -> FittedModel:
    """Fit the model on the `params.history_days` before `as_of` (events after it ignored)."""
    zones, site_zone = _site_zones(terms)
    local = LocalTime(zones, as_of - int(params.history_days * DAY), as_of, params.holidays)
    return fit_model(terms, evidence_before(evidence, as_of), as_of, params, local, site_zone)


# --------------------------------------------------------------------------- Monte Carlo


@dataclass
class _Draw:
    """Down spells of every run, sorted by (run, device, start); `initial` marks the rest of
    a spell open at the forecast instant (the one a repair now would end)."""

    sim: I64
    dev: I64
    a: I64
    b: I64
    initial: NDArray[np.bool_]

    def subset(self, keep: NDArray[np.bool_] | slice) -> _Draw:
        return _Draw(self.sim[keep], self.dev[keep], self.a[keep], self.b[keep], self.initial[keep])

    @staticmethod
    def concat(parts: list[_Draw]) -> _Draw:
        return _Draw(*(np.concatenate([getattr(d, k) for d in parts]) for k in ("sim", "dev", "a", "b", "initial")))


@dataclass
class _Frame:
    """The remaining period on an hourly grid: cumulative bad-able counted seconds per
    timeline key (sites first, then devices with their own exclusions), working/off day per
    zone, and per site objective a table of extra bad seconds by number of devices down."""

    terms: Terms
    ev: Evidence
    as_of: int
    end: int
    sims: int
    grid: I64  # (H + 1,) instants: as_of, as_of + 1h, ..., end
    bad_key: F64  # (K, H + 1) cumulative bad-able counted seconds since as_of
    device_key: I64
    offday: NDArray[np.bool_]  # (zones, H + 1): working/off day at each grid hour
    nmax: int
    tables: dict[str, F64] = field(default_factory=dict)  # objective -> (S, nmax + 1, H + 1), row n=0 zero
    baseline: dict[str, F64] = field(default_factory=dict)  # objective -> (S, H + 1) cumulative, no device down

    @property
    def n_sites(self) -> int:
        return len(self.terms.sites)

    def locate(self, t: I64) -> tuple[I64, F64]:
        """Grid cell and fraction through it of each instant."""
        h = np.minimum(((t - self.as_of) * (1.0 / HOUR)).astype(np.int64), len(self.grid) - 2)
        width = np.diff(self.grid).astype(float)
        return h, np.minimum((t - self.grid[h]) / np.maximum(width, 1.0)[h], 1.0)


def _gather(table: F64, row: I64, h: I64, frac: F64) -> F64:
    """Linear interpolation in a cumulative grid table (rows × (H + 1))."""
    flat = table.reshape(-1)
    base = row * table.shape[-1] + h
    lo = flat[base]
    return lo + frac * (flat[base + 1] - lo)


def _bits(span: int) -> int:
    """Bits of an offset in [0, span): sort keys pack (group << bits) | offset."""
    return max(int(span).bit_length(), 1)


def _frame(terms: Terms, ev: Evidence, model: FittedModel, start: int, as_of: int, end: int, sims: int,
           local: LocalTime, site_zone: I64) -> _Frame:
    clock = counted_clock(terms, ev, start, end)
    h = max(1, -(-(end - as_of) // HOUR))
    grid = np.minimum(as_of + HOUR * np.arange(h + 1, dtype=np.int64), end)
    ns = len(terms.sites)
    n_keys = max(int(clock.device_key.max()) + 1 if ev.n_devices else 0, ns)
    k = np.repeat(np.arange(n_keys, dtype=np.int64), h + 1)
    t = np.tile(grid, n_keys)
    c = (clock.counted.at(k, t) - clock.forced.at(k, t)).reshape(n_keys, h + 1).astype(float)
    bad_key = c - c[:, :1]
    nz = len(local.zones)
    offday = local.hour_offday(np.tile(grid, nz), np.repeat(np.arange(nz, dtype=np.int64), h + 1))[1].reshape(nz, h + 1)
    nmax = int(np.bincount(ev.device_site, minlength=ns).max()) if ev.n_devices else 0
    fr = _Frame(terms, ev, as_of, end, sims, grid, bad_key, clock.device_key, offday, nmax)
    site_objs = [o for o in terms.objectives if o.kpi in ("site_availability", "site_max_down")]
    if not site_objs:
        return fr
    mid = (grid[:-1] + grid[1:]) // 2
    per_bin = np.diff(bad_key[:ns], axis=1)  # (S, H)
    n = np.arange(nmax + 1)
    for o in site_objs:
        if o.kpi == "site_max_down":
            p_bad = np.broadcast_to((n > o.max_down)[None, :, None].astype(float), (ns, nmax + 1, h))
        else:
            dep = (ev.deployed[:, None] <= mid[None, :]) & (mid[None, :] < ev.retired[:, None])
            n_dep = np.zeros((ns, h))
            np.add.at(n_dep, ev.device_site, dep)
            hour, offd = local.hour_offday(np.tile(mid, ns), np.repeat(site_zone, h))
            q = model.occupancy[offd.astype(np.int64), hour].reshape(ns, h)
            n_up = np.maximum(n_dep[:, None, :] - n[None, :, None], 0)  # (S, N+1, H)
            p_bad = _binom_cdf_below(o.min_available, n_up, 1.0 - q[:, None, :])
        tab = np.zeros((ns, nmax + 1, h + 1))
        np.cumsum(p_bad * per_bin[:, None, :], axis=2, out=tab[:, :, 1:])
        fr.baseline[o.id] = tab[:, 0, :].copy()
        fr.tables[o.id] = (tab - tab[:, :1, :]).astype(np.float32)  # extra bad seconds over "no device down"
    return fr


def _binom_cdf_below(k: int, n: F64, p: F64) -> F64:
    """P(Binomial(n, p) < k) elementwise, n integer-valued and small."""
    shape = np.broadcast_shapes(n.shape, p.shape)
    out = np.zeros(shape)
    if k <= 0:
        return out
    n_int = n.astype(np.int64)
    top = int(n_int.max()) if n_int.size else 0
    comb = np.array([[math.comb(m, i) for i in range(k)] for m in range(top + 1)], float)
    for i in range(k):
        with np.errstate(invalid="ignore"):
            term = comb[n_int, i] * p**i * (1.0 - p) ** np.maximum(n - i, 0)
        out += np.where(n >= i, term, 0.0)
    return np.clip(out, 0.0, 1.0)


def _halves(sims: int) -> list[tuple[int, int]]:
    """The runs split in two (first run, count): each half is drawn and evaluated on its own
    thread with its own random stream, so the result depends on the seed, not on timing."""
    half = sims // 2
    return [(0, half), (half, sims - half)] if half else [(0, sims)]


def _draw_split(model: FittedModel, fr: _Frame, rng: np.random.Generator, dev_zone: I64,
                pool: ThreadPoolExecutor) -> _Draw:
    parts = _halves(fr.sims)
    jobs = [pool.submit(_draw, model, fr, g, dev_zone, s0, n) for g, (s0, n) in zip(rng.spawn(len(parts)), parts)]
    return _Draw.concat([j.result() for j in jobs])


def _evaluate_split(fr: _Frame, draw: _Draw, pool: ThreadPoolExecutor, until: int | None = None) -> dict[str, F64]:
    parts = _halves(fr.sims)
    cuts = np.searchsorted(draw.sim, [s0 for s0, _ in parts] + [fr.sims]).tolist()
    jobs = [pool.submit(_evaluate, fr, draw.subset(slice(cuts[i], cuts[i + 1])), until, s0, n)
            for i, (s0, n) in enumerate(parts)]
    outs = [j.result() for j in jobs]
    return {k: np.concatenate([o[k] for o in outs], axis=0) for k in outs[0]}


def _draw(model: FittedModel, fr: _Frame, rng: np.random.Generator, dev_zone: I64, sim0: int, sims: int) -> _Draw:
    """Down spells of runs sim0 .. sim0 + sims - 1."""
    ev, as_of, end = fr.ev, fr.as_of, fr.end
    u0 = np.maximum(ev.deployed, as_of)
    u1 = np.minimum(ev.retired, end)
    alive = np.flatnonzero(u1 > u0)
    span = (u1 - u0)[alive].astype(float)
    lam = rng.gamma(model.shape[alive], 1.0 / model.rate[alive], (sims, len(alive)))
    count = rng.poisson(lam * span).ravel()
    del lam
    sim = np.repeat(np.repeat(np.arange(sim0, sim0 + sims, dtype=np.int64), len(alive)), count)
    dev = np.repeat(np.tile(alive, sims), count)
    a = u0[dev] + np.floor(rng.random(len(dev)) * (u1 - u0)[dev]).astype(np.int64)
    off = fr.offday[dev_zone[dev], np.clip((a - as_of) // HOUR, 0, fr.offday.shape[1] - 1)]
    dur = np.where(off, _resample(rng, model.durations_off, len(dev)), _resample(rng, model.durations_work, len(dev)))
    # Open spells: the rest of each, given its age.
    opened = np.flatnonzero((model.open_age >= 0) & (ev.deployed <= as_of) & (ev.retired > as_of))
    rest = np.zeros((sims, len(opened)))
    for j, d in enumerate(opened.tolist()):
        pool = model.durations_off if model.open_offday[d] else model.durations_work
        age = float(model.open_age[d])
        tail = pool[np.searchsorted(pool, age, side="right"):]
        if len(tail) >= MIN_TAIL:
            rest[:, j] = tail[rng.integers(0, len(tail), sims)] - age
        else:
            rest[:, j] = max(age, HOUR) * rng.exponential(1.0, sims)
    n_open = sims * len(opened)
    sim = np.concatenate([np.repeat(np.arange(sim0, sim0 + sims, dtype=np.int64), len(opened)), sim])
    dev = np.concatenate([np.tile(opened, sims), dev])
    a = np.concatenate([np.full(n_open, as_of, np.int64), a])
    dur = np.concatenate([rest.ravel(), dur])
    b = np.minimum(a + np.maximum(np.rint(dur), 1).astype(np.int64), u1[dev])
    initial = np.arange(len(a)) < n_open
    # Stable sort: the spells come in two runs already ordered by (run, device), which timsort merges.
    order = np.argsort(((sim * ev.n_devices + dev) << _bits(end - as_of + 2)) | (a - as_of), kind="stable")
    return _Draw(sim[order], dev[order], a[order], b[order], initial[order])


def _resample(rng: np.random.Generator, pool: F64, n: int) -> F64:
    return pool[rng.integers(0, len(pool), n)] if n else np.zeros(0)


def _merge(d: _Draw, n_dev: int, t0: int, bits: int) -> tuple[I64, I64, I64, I64]:
    """Union of each (run, device)'s spells (already sorted by run, device, start)."""
    if len(d.a) == 0:
        return d.sim, d.dev, d.a, d.b
    g = (d.sim * n_dev + d.dev) << bits
    ka, kb = g | (d.a - t0), g | (d.b - t0)
    run = np.maximum.accumulate(kb)
    first = np.flatnonzero(np.concatenate([[True], ka[1:] > run[:-1]]))
    last_b = (np.maximum.reduceat(kb, first) & ((1 << bits) - 1)) + t0
    return d.sim[first], d.dev[first], d.a[first], last_b


def _evaluate(fr: _Frame, draw: _Draw, until: int | None, sim0: int, sims: int) -> dict[str, F64]:
    """Simulated bad seconds of every run in [as_of, until or end): per time objective a
    (sims, units) matrix, units being devices for per_device scope and sites otherwise (an
    estate sums its sites), for runs sim0 .. sim0 + sims - 1 (the draw holds just those)."""
    ev, terms, ns = fr.ev, fr.terms, fr.n_sites
    nd = ev.n_devices
    bits = _bits(fr.end - fr.as_of + 2)
    sim, dev, a, b = _merge(draw, nd, fr.as_of, bits)
    sim = sim - sim0  # rows of this part's matrices
    if until is not None:
        a, b = np.minimum(a, until), np.minimum(b, until)
        keep = a < b
        sim, dev, a, b = sim[keep], dev[keep], a[keep], b[keep]
    h_until, f_until = fr.locate(np.full(ns, fr.end if until is None else until, np.int64))
    site = ev.device_site[dev]
    out: dict[str, F64] = {}
    uptime = [o for o in terms.objectives if o.kpi == "device_uptime"]
    if uptime:
        key = fr.device_key[dev]
        ha, fa = fr.locate(a)
        hb, fb = fr.locate(b)
        sec = (_gather(fr.bad_key, key, hb, fb) - _gather(fr.bad_key, key, ha, fa)) * ev.device_weight[dev]
        by_site = np.bincount(sim * ns + site, weights=sec, minlength=sims * ns).reshape(sims, ns)
        for o in uptime:
            if o.scope == "per_device":
                out[o.id] = np.bincount(sim * nd + dev, weights=sec, minlength=sims * nd).reshape(sims, nd)
            else:
                out[o.id] = by_site
    if fr.tables:
        g = (sim * ns + site) << (bits + 1)
        keys = np.concatenate([g | ((a - fr.as_of) << 1) | 1, g | ((b - fr.as_of) << 1)])
        del g
        keys.sort()
        grp = keys >> (bits + 1)
        t = ((keys >> 1) & ((1 << bits) - 1)) + fr.as_of
        cnt = np.cumsum((keys & 1) * 2 - 1)
        np.minimum(cnt, fr.nmax, out=cnt)
        same = np.flatnonzero((grp[1:] == grp[:-1]) & (cnt[:-1] > 0))
        gi, ni, ta, tb = grp[same], cnt[same], t[same], t[same + 1]
        del keys, grp, t, cnt, same
        row = (gi % ns) * (fr.nmax + 1) + ni
        ha, fa = fr.locate(ta)
        hb, fb = fr.locate(tb)
        for o in terms.objectives:
            if o.id not in fr.tables:
                continue
            flat = fr.tables[o.id].reshape(ns * (fr.nmax + 1), -1)
            if o.kpi == "site_max_down":
                m = np.flatnonzero(ni > o.max_down)
                extra = _gather(flat, row[m], hb[m], fb[m]) - _gather(flat, row[m], ha[m], fa[m])
                per = np.bincount(gi[m], weights=extra, minlength=sims * ns)
            else:
                extra = _gather(flat, row, hb, fb) - _gather(flat, row, ha, fa)
                per = np.bincount(gi, weights=extra, minlength=sims * ns)
            base = _gather(fr.baseline[o.id], np.arange(ns), h_until, f_until)
            out[o.id] = per.reshape(sims, ns) + base[None, :]
    return out


def _unit_columns(terms: Terms, ev: Evidence, o: Objective, m: F64, rows: list[SubjectBudget]) -> F64:
    """The (sims, subjects) bad-time matrix of an objective's subjects, in `rows` order."""
    if o.scope == "estate":
        return m.sum(axis=1, keepdims=True)
    index = ({d: i for i, d in enumerate(ev.device_ids)} if o.scope == "per_device"
             else {s.id: i for i, s in enumerate(terms.sites)})
    return m[:, [index[b.subject] for b in rows]]


def _ticket_draws(terms: Terms, budgets: BudgetReport, start: int, as_of: int, end: int, sims: int,
                  rng: np.random.Generator) -> dict[tuple[str, str], tuple[F64, F64]]:
    """(future good, future counted) tickets per ticket subject, per run: decided tickets
    arrive as Poisson at the month-to-date rate; each is good with p ~ Beta, the subject's
    month-to-date share shrunk towards the objective's (20 pseudo-tickets)."""
    out: dict[tuple[str, str], tuple[F64, F64]] = {}
    elapsed = max(as_of - start, HOUR)
    for o in terms.objectives:
        if o.kpi not in TICKET_KPIS:
            continue
        rows = [b for b in budgets.subjects if b.objective == o.id]
        g_all, c_all = sum(b.good for b in rows), sum(b.counted for b in rows)
        prior = (1 + g_all) / (2 + c_all)
        for b in rows:
            n_f = rng.poisson(b.counted / elapsed * (end - as_of), sims)
            p = rng.beta(20 * prior + b.good, 20 * (1 - prior) + b.counted - b.good, sims)
            out[(o.id, b.subject)] = (rng.binomial(n_f, p).astype(float), n_f.astype(float))
    return out


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SubjectForecast:
    """Forecast of one subject. Attainments in basis points; credits in smallest units."""

    budget: SubjectBudget
    p_meet: float
    attainment_p05: int
    attainment_p50: int
    attainment_p95: int
    expected_credit: float
    credit_if_missed: int  # credit at the first tier below the target
    status: str  # "lost" | "at_risk" | "on_track"

    @property
    def objective(self) -> str:
        return self.budget.objective

    @property
    def subject(self) -> str:
        return self.budget.subject

    def to_json_dict(self) -> dict[str, Any]:
        return {"objective": self.objective, "subject": self.subject, "kpi": self.budget.kpi,
                "scope": self.budget.scope, "target_bps": self.budget.target_bps,
                "attainment_bps": self.budget.attainment_bps, "p_meet": round(self.p_meet, 4),
                "attainment_interval_bps": {"p05": self.attainment_p05, "p50": self.attainment_p50,
                                            "p95": self.attainment_p95},
                "expected_credit": str(int(round(self.expected_credit))),
                "credit_if_missed": str(self.credit_if_missed), "status": self.status,
                "budget": self.budget.to_json_dict()}


@dataclass(frozen=True)
class FaultPriority:
    """An open fault (a device down now) and what fixing it now is expected to save."""

    device: str
    site: str
    down_since: int
    expected_credit_saved: float  # smallest units
    subjects: tuple[tuple[str, str, float, float], ...]  # (objective, subject, P(meet) now, if fixed)
    site_lost: bool  # every per-site subject of the device's site is already lost

    def to_json_dict(self) -> dict[str, Any]:
        return {"device": self.device, "site": self.site, "down_since": iso_utc(self.down_since),
                "expected_credit_saved": str(int(round(self.expected_credit_saved))), "site_lost": self.site_lost,
                "subjects": [{"objective": o, "subject": s, "p_meet": round(p0, 4), "p_meet_if_fixed": round(p1, 4)}
                             for o, s, p0, p1 in self.subjects]}


@dataclass(frozen=True)
class ForecastReport:
    agreement: str
    label: str
    start: int
    end: int
    as_of: int
    params: ForecastParams
    model: FittedModel
    subjects: tuple[SubjectForecast, ...]
    priorities: tuple[FaultPriority, ...]
    seconds: float
    samples: dict[tuple[str, str], NDArray[np.int64]] = field(default_factory=dict, repr=False)

    def get(self, objective: str, subject: str) -> SubjectForecast:
        return next(s for s in self.subjects if s.objective == objective and s.subject == subject)

    def to_json_dict(self) -> dict[str, Any]:
        return {"agreement": self.agreement,
                "period": {"label": self.label, "start": iso_utc(self.start), "end": iso_utc(self.end)},
                "as_of": iso_utc(self.as_of), "sims": self.params.sims, "seed": self.params.seed,
                "model": self.model.to_json_dict(), "seconds": round(self.seconds, 3),
                "subjects": [s.to_json_dict() for s in self.subjects],
                "priorities": [p.to_json_dict() for p in self.priorities]}


def _fee(terms: Terms, o: Objective, subject: str, site_fee: dict[str, int]) -> int:
    if o.scope == "per_site":
        return site_fee[subject]
    return terms.monthly_fee if o.scope == "estate" else o.device_fee


def _final(budget: SubjectBudget, bad: F64, extra: tuple[F64, F64] | None) -> NDArray[np.int64]:
    """Final attainment per run (basis points, floored)."""
    if extra is not None:
        good = budget.good + extra[0]
        counted = budget.counted + extra[1]
    else:
        rem = budget.expected_counted - budget.counted
        good = budget.good + rem - np.minimum(bad, rem)
        counted = np.full(len(bad), float(budget.expected_counted))
    return _attainment(good, counted)


def _attainment(good: F64, counted: F64) -> NDArray[np.int64]:
    att = np.where(counted > 0, np.floor(BPS * good / np.maximum(counted, 1) + 1e-9), BPS)
    return att.astype(np.int64)


def _credits(fee: int | NDArray[np.int64], o: Objective, att: NDArray[np.int64]) -> F64:
    """`oracle.core.credit.subject_credit` elementwise (the same tier walk, vectorised)."""
    rate = np.zeros(att.shape, np.int64)
    for below, credit in o.tiers:  # below_bps descending: the last tier above the attainment wins
        rate = np.where(att < below, credit, rate)
    return (np.asarray(fee, np.int64) * rate // BPS).astype(float)


def _objective_forecasts(o: Objective, rows: list[SubjectBudget], fees: NDArray[np.int64], bad: F64 | None,
                         tickets: dict[tuple[str, str], tuple[F64, F64]], sims: int, at_risk_below: float
                         ) -> tuple[list[SubjectForecast], NDArray[np.int64]]:
    """Forecasts of one objective's subjects; `bad` is (sims, subjects) simulated bad time."""
    good = np.array([b.good for b in rows], float)[None, :]
    counted = np.array([b.counted for b in rows], float)[None, :]
    if o.kpi in TICKET_KPIS:
        zero = (np.zeros(sims), np.zeros(sims))
        fut = [tickets.get((o.id, b.subject), zero) for b in rows]
        att = _attainment(good + np.stack([f[0] for f in fut], 1), counted + np.stack([f[1] for f in fut], 1))
    else:
        expected = np.array([b.expected_counted for b in rows], float)[None, :]
        rem = expected - counted
        lost = np.zeros((sims, len(rows))) if bad is None else np.minimum(bad, rem)
        att = _attainment(good + rem - lost, np.broadcast_to(expected, lost.shape))
    p = (att >= o.target_bps).mean(axis=0)
    q = np.percentile(att, [5, 50, 95], axis=0, method="nearest").astype(np.int64)
    credit = _credits(fees[None, :], o, att).mean(axis=0)
    missed = _credits(fees, o, np.full(len(rows), o.target_bps - 1)) if o.target_bps > 0 else np.zeros(len(rows))
    out = []
    for i, b in enumerate(rows):
        status = "lost" if b.lost else ("at_risk" if p[i] < at_risk_below else "on_track")
        out.append(SubjectForecast(b, float(p[i]), int(q[0, i]), int(q[1, i]), int(q[2, i]), float(credit[i]),
                                   int(missed[i]), status))
    return out, att


def forecast_period(terms: Terms, evidence: Evidence, label: str, as_of: int,
                    params: ForecastParams = ForecastParams(), prioritise: bool = True,
                    budgets: BudgetReport | None = None, model: FittedModel | None = None) -> ForecastReport:
    """Forecast every subject of period `label` at `as_of` from the evidence before it
    (events after `as_of` are ignored). With `prioritise`, also rank the open faults by
    expected credit saved if fixed now. `budgets`: the month-to-date budgets, if already
    computed for the same instant (saves a KPI run); `model`: a model fitted earlier (see
    `fit`), e.g. once a day, instead of fitting now."""
    t0 = time.perf_counter()
    start, end = period_bounds(terms, label)
    ev = evidence_before(evidence, as_of)
    zones, site_zone = _site_zones(terms)
    local = LocalTime(zones, min(start, as_of - int(params.history_days * DAY)), end, params.holidays)
    # The month-to-date KPIs are needed only once the runs are drawn and evaluated: they run on
    # one worker meanwhile, the two halves of the runs on the other two (numpy releases the GIL
    # in the big array operations, so the KPI pass, the fit and the runs share the cores).
    with ThreadPoolExecutor(max_workers=3) as pool:
        pending = pool.submit(compute_period, terms, ev, label, as_of=as_of, commit=False) if budgets is None else None
        if model is None:
            model = fit_model(terms, ev, as_of, params, local, site_zone)
        rng = np.random.default_rng(params.seed)
        sims = params.sims
        fr = _frame(terms, ev, model, start, as_of, end, sims, local, site_zone)
        draw = _draw_split(model, fr, rng, site_zone[ev.device_site], pool)
        units = _evaluate_split(fr, draw, pool)
        if pending is not None:
            budgets = budget_from_period(pending.result())
        assert budgets is not None
        tickets = _ticket_draws(terms, budgets, start, as_of, end, sims, rng)
        site_fee = {s.id: s.fee for s in terms.sites}
        results: list[SubjectForecast] = []
        samples: dict[tuple[str, str], NDArray[np.int64]] = {}
        for o in terms.objectives:
            rows = [b for b in budgets.subjects if b.objective == o.id]
            fees = np.array([_fee(terms, o, b.subject, site_fee) for b in rows], np.int64)
            bad = _unit_columns(terms, ev, o, units[o.id], rows) if o.id in units else None
            res, att = _objective_forecasts(o, rows, fees, bad, tickets, sims, params.at_risk_below)
            results += res
            samples.update({(o.id, b.subject): att[:, i] for i, b in enumerate(rows)})
        priorities: tuple[FaultPriority, ...] = ()
        if prioritise:
            priorities = _prioritise(fr, draw, model, budgets, units, samples, pool)
        return ForecastReport(terms.agreement, label, start, end, as_of, params, model, tuple(results), priorities,
                              time.perf_counter() - t0, samples)


# --------------------------------------------------------------------------- prioritising


def _prioritise(fr: _Frame, draw: _Draw, model: FittedModel, budgets: BudgetReport, units: dict[str, F64],
                base: dict[tuple[str, str], NDArray[np.int64]], pool: ThreadPoolExecutor) -> tuple[FaultPriority, ...]:
    """Expected credit saved by ending each open down spell now. Common random numbers: the
    same runs re-evaluated without that spell. A site's subjects depend only on its own
    devices, so one round fixes one fault per site and re-evaluates only those sites; an
    estate subject's runs change by that site's difference alone."""
    terms, ev = fr.terms, fr.ev
    open_devs = np.flatnonzero((model.open_age >= 0) & (ev.deployed <= fr.as_of) & (ev.retired > fr.as_of))
    if not len(open_devs) or fr.as_of >= fr.end:
        return ()
    site = ev.device_site[open_devs]
    order = np.lexsort((open_devs, site))
    open_devs, site = open_devs[order], site[order]
    rank = np.arange(len(open_devs)) - np.searchsorted(site, site)
    by_key = {(b.objective, b.subject): b for b in budgets.subjects}
    time_objs = [o for o in terms.objectives if o.id in units]
    site_fee = {s.id: s.fee for s in terms.sites}
    fees = {(o.id, s): _fee(terms, o, s, site_fee) for o in time_objs for (oid, s) in by_key if oid == o.id}
    base_credit = {k: float(_credits(fees[k], next(o for o in time_objs if o.id == k[0]), base[k]).mean())
                   for k in fees}
    estate_total = {o.id: units[o.id].sum(axis=1) for o in time_objs if o.scope == "estate"}
    draw = draw.subset(np.isin(ev.device_site[draw.dev], site))  # only sites with an open fault matter
    draw_site = ev.device_site[draw.dev]
    saved = np.zeros(len(open_devs))
    rows: list[list[tuple[str, str, float, float]]] = [[] for _ in open_devs]
    for r in range(int(rank.max()) + 1):
        in_round = np.flatnonzero(rank == r)
        fixed = open_devs[in_round]
        keep = np.isin(draw_site, site[in_round]) & ~(draw.initial & np.isin(draw.dev, fixed))
        after = _evaluate_split(fr, draw.subset(keep), pool)
        for i in in_round.tolist():
            d, s = int(open_devs[i]), int(site[i])
            for o in time_objs:
                if o.scope == "per_device":
                    subj, bad = ev.device_ids[d], after[o.id][:, d]
                elif o.scope == "per_site":
                    subj, bad = terms.sites[s].id, after[o.id][:, s]
                else:
                    subj, bad = ESTATE, estate_total[o.id] - units[o.id][:, s] + after[o.id][:, s]
                k = (o.id, subj)
                if k not in by_key:
                    continue
                att = _final(by_key[k], bad, None)
                saved[i] += base_credit[k] - float(_credits(fees[k], o, att).mean())
                rows[i].append((o.id, subj, float(np.mean(base[k] >= o.target_bps)),
                                float(np.mean(att >= o.target_bps))))
    out = []
    for i, d in enumerate(open_devs.tolist()):
        sid = terms.sites[int(site[i])].id
        mine = [b for b in budgets.subjects if b.scope == "per_site" and b.subject == sid and b.exact]
        out.append(FaultPriority(ev.device_ids[d], sid, fr.as_of - int(model.open_age[d]), float(saved[i]),
                                 tuple(rows[i]), bool(mine) and all(b.lost for b in mine)))
    out.sort(key=lambda f: (-f.expected_credit_saved, f.device))
    return tuple(out)


# --------------------------------------------------------------------------- burn chart


@dataclass(frozen=True)
class BurnChart:
    """Budget used over the period for one subject: observed up to `as_of`, then the
    forecast's 5th/50th/95th percentiles; `budget_total` is the line not to cross."""

    objective: str
    subject: str
    unit: str
    budget_total: int
    as_of: int
    observed: tuple[tuple[int, int], ...]  # (instant, budget used)
    forecast: tuple[tuple[int, float, float, float], ...]  # (instant, p05, p50, p95)

    def to_json_dict(self) -> dict[str, Any]:
        return {"objective": self.objective, "subject": self.subject, "unit": self.unit,
                "budget_total": self.budget_total, "as_of": iso_utc(self.as_of),
                "observed": [{"t": iso_utc(t), "used": u} for t, u in self.observed],
                "forecast": [{"t": iso_utc(t), "p05": round(a, 1), "p50": round(b, 1), "p95": round(c, 1)}
                             for t, a, b, c in self.forecast]}


def burn_chart(terms: Terms, evidence: Evidence, label: str, as_of: int, objective: str, subject: str,
               params: ForecastParams = ForecastParams(), points: int = 16) -> BurnChart:
    """The budget-burn chart of one time-based subject with the forecast band (the same
    model and runs as `forecast_period`, restricted to that objective)."""
    o = next(x for x in terms.objectives if x.id == objective)
    if o.kpi in TICKET_KPIS:
        raise ValueError(f"{objective}: burn charts are for time-based KPIs")
    terms1 = replace(terms, objectives=(o,))
    start, end = period_bounds(terms, label)
    ev = evidence_before(evidence, as_of)
    budget = budget_from_period(compute_period(terms1, ev, label, as_of=as_of, commit=False)).get(objective, subject)
    observed = []
    for t in [*range(start + DAY, as_of, DAY), as_of]:
        good, counted = measure_window(terms1, ev, start, t).get((objective, subject), (0, 0))
        observed.append((t, counted - good))
    forecast: list[tuple[int, float, float, float]] = []
    if as_of < end:
        zones, site_zone = _site_zones(terms1)
        local = LocalTime(zones, min(start, as_of - int(params.history_days * DAY)), end, params.holidays)
        model = fit_model(terms1, ev, as_of, params, local, site_zone)
        fr = _frame(terms1, ev, model, start, as_of, end, params.sims, local, site_zone)
        with ThreadPoolExecutor(max_workers=2) as pool:  # the same runs as forecast_period's
            draw = _draw_split(model, fr, np.random.default_rng(params.seed), site_zone[ev.device_site], pool)
            cols = [(c, _unit_columns(terms1, ev, o, _evaluate_split(fr, draw, pool, until=c)[objective], [budget])[:, 0])
                    for c in np.unique(np.linspace(as_of, end, max(points, 2)).astype(np.int64)).tolist()]
        for c, col in cols:
            p05, p50, p95 = np.percentile(budget.budget_used + col, [5, 50, 95])
            forecast.append((c, float(p05), float(p50), float(p95)))
    return BurnChart(objective, subject, budget.unit, budget.budget_total, as_of, tuple(observed), tuple(forecast))
