"""The forecast's Monte Carlo runs: down spells drawn from the fitted model for every run and
device, and the bad counted seconds they cause per objective and unit (sites or devices),
on an hourly grid of the remaining period. Runs are split in two halves, each on its own
thread with its own random stream."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from oracle.core.terms import Objective, Terms
from oracle.engine.budget import TICKET_KPIS, BudgetReport, SubjectBudget
from oracle.engine.forecast.model import F64, HOUR, I64, FittedModel, LocalTime
from oracle.engine.timeline import counted_clock
from oracle.evidence.load import Evidence

MIN_TAIL = 5  # durations needed above an open spell's age to resample its rest


@dataclass
class Draw:
    """Down spells of every run, sorted by (run, device, start); `initial` marks the rest of
    a spell open at the forecast instant (the one a repair now would end)."""

    sim: I64
    dev: I64
    a: I64
    b: I64
    initial: NDArray[np.bool_]

    def subset(self, keep: NDArray[np.bool_] | slice) -> Draw:
        return Draw(self.sim[keep], self.dev[keep], self.a[keep], self.b[keep], self.initial[keep])

    @staticmethod
    def concat(parts: list[Draw]) -> Draw:
        return Draw(*(np.concatenate([getattr(d, k) for d in parts]) for k in ("sim", "dev", "a", "b", "initial")))


@dataclass
class Frame:
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
    return np.asarray(lo + frac * (flat[base + 1] - lo), dtype=np.float64)


def _bits(span: int) -> int:
    """Bits of an offset in [0, span): sort keys pack (group << bits) | offset."""
    return max(int(span).bit_length(), 1)


def build_frame(terms: Terms, ev: Evidence, model: FittedModel, start: int, as_of: int, end: int, sims: int,
           local: LocalTime, site_zone: I64) -> Frame:
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
    fr = Frame(terms, ev, as_of, end, sims, grid, bad_key, clock.device_key, offday, nmax)
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


def draw_split(model: FittedModel, fr: Frame, rng: np.random.Generator, dev_zone: I64,
                pool: ThreadPoolExecutor) -> Draw:
    parts = _halves(fr.sims)
    jobs = [pool.submit(_draw, model, fr, g, dev_zone, s0, n) for g, (s0, n) in zip(rng.spawn(len(parts)), parts)]
    return Draw.concat([j.result() for j in jobs])


def evaluate_split(fr: Frame, draw: Draw, pool: ThreadPoolExecutor, until: int | None = None) -> dict[str, F64]:
    parts = _halves(fr.sims)
    cuts = np.searchsorted(draw.sim, [s0 for s0, _ in parts] + [fr.sims]).tolist()
    jobs = [pool.submit(_evaluate, fr, draw.subset(slice(cuts[i], cuts[i + 1])), until, s0, n)
            for i, (s0, n) in enumerate(parts)]
    outs = [j.result() for j in jobs]
    return {k: np.concatenate([o[k] for o in outs], axis=0) for k in outs[0]}


def _draw(model: FittedModel, fr: Frame, rng: np.random.Generator, dev_zone: I64, sim0: int, sims: int) -> Draw:
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
    return Draw(sim[order], dev[order], a[order], b[order], initial[order])


def _resample(rng: np.random.Generator, pool: F64, n: int) -> F64:
    return pool[rng.integers(0, len(pool), n)] if n else np.zeros(0)


def _merge(d: Draw, n_dev: int, t0: int, bits: int) -> tuple[I64, I64, I64, I64]:
    """Union of each (run, device)'s spells (already sorted by run, device, start)."""
    if len(d.a) == 0:
        return d.sim, d.dev, d.a, d.b
    g = (d.sim * n_dev + d.dev) << bits
    ka, kb = g | (d.a - t0), g | (d.b - t0)
    run = np.maximum.accumulate(kb)
    first = np.flatnonzero(np.concatenate([[True], ka[1:] > run[:-1]]))
    last_b = (np.maximum.reduceat(kb, first) & ((1 << bits) - 1)) + t0
    return d.sim[first], d.dev[first], d.a[first], last_b


def _evaluate(fr: Frame, draw: Draw, until: int | None, sim0: int, sims: int) -> dict[str, F64]:
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
                out[o.id] = np.bincount(sim * nd + dev, weights=sec, minlength=sims * nd).reshape(sims, nd).astype(
                    np.float64, copy=False)
            else:
                out[o.id] = by_site.astype(np.float64, copy=False)
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


def unit_columns(terms: Terms, ev: Evidence, o: Objective, m: F64, rows: list[SubjectBudget]) -> F64:
    """The (sims, subjects) bad-time matrix of an objective's subjects, in `rows` order."""
    if o.scope == "estate":
        return np.asarray(m.sum(axis=1, keepdims=True), dtype=np.float64)
    index = ({d: i for i, d in enumerate(ev.device_ids)} if o.scope == "per_device"
             else {s.id: i for i, s in enumerate(terms.sites)})
    return m[:, [index[b.subject] for b in rows]]


def ticket_draws(terms: Terms, budgets: BudgetReport, start: int, as_of: int, end: int, sims: int,
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
