"""The simulated estate and its telemetry, generated with numpy for all devices at once.

Each device's history is a set of spells (intervals) per kind: sessions (in_use), faults,
planned maintenance (unavailable) and connectivity drop-outs (offline, silent). Its events
are a heartbeat grid plus every spell boundary; the state of an event is read off the spells
by priority (offline > unavailable > faulted > in_use > available), so two events of one
device at one second always agree and collapse into one row."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from oracle.core.calendar import add_months, month_bounds, parse_label
from oracle.evidence.schema import AVAILABLE, FAULTED, IN_USE, NO_END, OFFLINE, UNAVAILABLE
from oracle.sim.clock import DAY, HOUR, LocalClock
from oracle.sim.profiles import PROFILES, Profile

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

CAUSES = ("device", "site_outage")
BAD_SITE_RATE_FACTOR = 3.0  # bad sites also fail this many times more often
FRAILTY_SHAPE = 4.0  # per-device failure rates ~ Gamma(shape, mean/shape): some devices are lemons
REPAIR_SHAPE = 2.0  # time to repair ~ Gamma(shape, mean/shape)
SESSION_SIGMA = 0.6  # lognormal sigma of session durations
DROPOUT_SIGMA = 1.0  # lognormal sigma of drop-out durations
JITTER_S = 20  # heartbeats arrive up to this late
# Independent random streams: changing one knob does not reshuffle the others.
_STREAMS = {"sites": 1, "devices": 2, "churn": 3, "sessions": 4, "faults": 5, "outages": 6,
            "maintenance": 7, "dropouts": 8, "heartbeats": 9, "tickets": 10}


class SimError(ValueError):
    """A simulation parameter a user must fix: `field` is the option, e.g. ``--sites``."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class SimParams:
    """Size, seed and rates of a simulated estate. Rates left as None take the profile's."""

    sites: int = 10
    devices_per_site: int = 4
    months: int = 1
    start: str = "2026-10"
    seed: int = 1
    profile: str = "ev_charger"
    timezone: str = "Europe/London"  # the agreement's zone (periods are its calendar months)
    agreement: str = ""  # default: "sim-<profile>-<seed>"
    failure_rate: float | None = None  # faults per device-hour
    mttr_weekday_h: float | None = None
    mttr_weekend_h: float | None = None  # weekends and public holidays
    dropout_rate: float | None = None  # drop-outs per device-hour
    dropout_mean_min: float | None = None
    heartbeat_s: int | None = None
    maintenance_per_site_month: float = 0.5  # planned site maintenance windows (excluded)
    firmware_per_device_month: float = 0.1  # device firmware updates (excluded for device_uptime)
    churn: float = 0.03  # share of devices retired (and replaced a little later) each month
    growth: float = 0.02  # share of new devices deployed each month
    bad_sites: int = 0  # sites that suffer a multi-day outage every month
    bad_outage_days: tuple[float, float] = (4.0, 8.0)

    def validate(self) -> Profile:
        if self.profile not in PROFILES:
            raise SimError("--profile", f"{self.profile!r} is not one of {', '.join(PROFILES)}")
        for name, value, lo in (("--sites", self.sites, 1), ("--devices-per-site", self.devices_per_site, 1),
                                ("--months", self.months, 1)):
            if value < lo:
                raise SimError(name, f"must be at least {lo}, got {value}")
        try:
            parse_label(self.start)
        except ValueError as exc:
            raise SimError("--start", str(exc)) from None
        if not 0 <= self.bad_sites <= self.sites:
            raise SimError("--bad-sites", f"must be between 0 and --sites ({self.sites})")
        for name, v in (("--failure-rate", self.failure_rate), ("--dropout-rate", self.dropout_rate),
                        ("--churn", self.churn), ("--growth", self.growth),
                        ("--maintenance-rate", self.maintenance_per_site_month)):
            if v is not None and not (v >= 0 and math.isfinite(v)):
                raise SimError(name, f"must be a non-negative number, got {v}")
        for name, v in (("--mttr-weekday", self.mttr_weekday_h), ("--mttr-weekend", self.mttr_weekend_h),
                        ("--dropout-mean", self.dropout_mean_min)):
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise SimError(name, f"must be a positive number, got {v}")
        if self.heartbeat_s is not None and not 10 <= self.heartbeat_s <= 6 * HOUR:
            raise SimError("--heartbeat", "must be between 10 s and 6 h")
        short, long_ = self.bad_outage_days
        if not 0 < short <= long_ <= 20:
            raise SimError("--bad-outage-days", "needs 0 < min <= max <= 20")
        return PROFILES[self.profile]


@dataclass(frozen=True)
class Rates:
    """The ground-truth rates in force (profile defaults with the user's overrides)."""

    failure_rate_per_h: float
    mttr_weekday_h: float
    mttr_weekend_h: float
    dropout_rate_per_h: float
    dropout_mean_s: float
    heartbeat_s: int

    @staticmethod
    def of(p: SimParams, prof: Profile) -> Rates:
        def pick(v: float | None, d: float) -> float:
            return d if v is None else float(v)
        return Rates(pick(p.failure_rate, prof.failure_rate_per_h), pick(p.mttr_weekday_h, prof.mttr_weekday_h),
                     pick(p.mttr_weekend_h, prof.mttr_weekend_h), pick(p.dropout_rate, prof.dropout_rate_per_h),
                     pick(None if p.dropout_mean_min is None else p.dropout_mean_min * 60, prof.dropout_mean_s),
                     int(p.heartbeat_s or prof.heartbeat_s))


@dataclass
class Estate:
    site_ids: list[str]
    site_zone: I64  # index into clock.zones
    site_hours: list[str]  # YAML flow mapping, "" = 24x7
    bad_sites: I64  # site indices
    device_ids: list[str]  # sorted
    device_site: I64
    weight: I64
    deployed: I64
    retired: I64  # NO_END if never
    failure_rate: F64  # per hour, ground truth per device

    @property
    def n_devices(self) -> int:
        return len(self.device_ids)


@dataclass
class Spells:
    """Intervals [start, end) of one kind, per device (not necessarily disjoint)."""

    dev: I64
    start: I64
    end: I64

    @staticmethod
    def empty() -> Spells:
        z = np.zeros(0, np.int64)
        return Spells(z, z.copy(), z.copy())

    @staticmethod
    def concat(*parts: Spells) -> Spells:
        return Spells(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("dev", "start", "end")))


@dataclass
class Simulation:
    params: SimParams
    profile: Profile
    rates: Rates
    clock: LocalClock
    periods: list[tuple[str, int, int]]
    horizon: tuple[int, int]  # events are generated in [start, end): a day of history first
    estate: Estate
    events_ts: I64
    events_dev: I64
    events_state: NDArray[np.int8]
    faults: dict[str, Any]  # ground truth: dev, start, end, offday, cause arrays
    exclusions: list[tuple[int, int, str, str]]
    tickets: dict[str, Any]  # site, severity, opened, responded, resolved (-1 = none yet)
    outages: list[dict[str, Any]] = field(default_factory=list)


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[stream]])


def _periods(p: SimParams) -> list[tuple[str, int, int]]:
    y, m = parse_label(p.start)
    out = []
    for k in range(p.months):
        yy, mm = add_months(y, m, k)
        label = f"{yy:04d}-{mm:02d}"
        out.append((label, *month_bounds(p.timezone, label)))
    return out


# --------------------------------------------------------------------------- estate


def _estate(p: SimParams, prof: Profile, rates: Rates, periods: list[tuple[str, int, int]], t0: int) -> Estate:
    rs, rd, rc = _rng(p.seed, "sites"), _rng(p.seed, "devices"), _rng(p.seed, "churn")
    width = max(3, len(str(p.sites)))
    site_ids = [f"{prof.site_prefix}-{i + 1:0{width}d}" for i in range(p.sites)]
    site_zone = rs.integers(0, len(prof.zones), p.sites)
    site_hours = [prof.business_hours[i] for i in rs.integers(0, len(prof.business_hours), p.sites)]
    bad = np.sort(rs.choice(p.sites, p.bad_sites, replace=False)) if p.bad_sites else np.zeros(0, np.int64)

    site: list[int] = np.repeat(np.arange(p.sites), p.devices_per_site).tolist()
    n0 = len(site)
    # Installed 1 to 24 months before the term, at a whole minute.
    dep: list[int] = (t0 - 60 * rd.integers(30 * 1440, 720 * 1440, n0)).tolist()
    ret = [NO_END] * n0
    counter = [p.devices_per_site] * p.sites
    seq: list[int] = np.tile(np.arange(1, p.devices_per_site + 1), p.sites).tolist()

    def count(share: float) -> int:
        return 0 if share <= 0 else max(1, round(share * n0))

    for _, ms, me in periods:
        lo, hi = ms + 3 * DAY, me - 3 * DAY
        active = [i for i in range(len(site)) if dep[i] < ms and ret[i] == NO_END]
        n_ret = min(count(p.churn), len(active))
        for i in sorted(rc.choice(active, n_ret, replace=False).tolist()) if n_ret else []:
            ret[i] = int(lo + 60 * rc.integers(0, (hi - lo) // 60))
            s = int(site[i])
            counter[s] += 1
            site.append(s)
            seq.append(counter[s])
            dep.append(min(ret[i] + 60 * int(rc.integers(120, 3 * 1440)), me - HOUR))  # the replacement
            ret.append(NO_END)
        for s in rc.integers(0, p.sites, count(p.growth)).tolist():
            counter[s] += 1
            site.append(s)
            seq.append(counter[s])
            dep.append(int(ms + 2 * DAY + 60 * rc.integers(0, (me - ms - 4 * DAY) // 60)))
            ret.append(NO_END)

    dwidth = max(2, len(str(max(counter))))
    ids = [f"{site_ids[s]}-{k:0{dwidth}d}" for s, k in zip(site, seq)]
    order = sorted(range(len(ids)), key=ids.__getitem__)
    n = len(ids)
    weight = np.where(rd.random(n) < prof.rapid_share, 2, 1).astype(np.int64)
    frailty = rd.gamma(FRAILTY_SHAPE, 1 / FRAILTY_SHAPE, n)
    dsite = np.array(site, dtype=np.int64)[order]
    rate = rates.failure_rate_per_h * frailty[order]
    rate = np.where(np.isin(dsite, bad), rate * BAD_SITE_RATE_FACTOR, rate)
    return Estate(site_ids, site_zone.astype(np.int64), site_hours, bad.astype(np.int64), [ids[i] for i in order],
                  dsite, weight[order], np.array(dep, dtype=np.int64)[order], np.array(ret, dtype=np.int64)[order],
                  rate)


# --------------------------------------------------------------------------- spells


def _poisson_points(rng: np.random.Generator, rate_per_s: F64 | float, s: I64, e: I64) -> tuple[I64, I64]:
    """Homogeneous Poisson arrivals per device in [s, e): (device, time) arrays."""
    span = np.maximum(e - s, 0)
    n = rng.poisson(np.asarray(rate_per_s) * span)
    dev = np.repeat(np.arange(len(s)), n)
    t = s[dev] + np.floor(rng.random(len(dev)) * span[dev]).astype(np.int64)
    return dev, t


def _sessions(sim_rng: np.random.Generator, prof: Profile, est: Estate, clock: LocalClock, s: I64, e: I64) -> Spells:
    wd, we = np.array(prof.occupancy_weekday), np.array(prof.occupancy_weekend)
    pmax = float(max(wd.max(), we.max()))
    if pmax <= 0:
        return Spells.empty()
    # With Poisson arrivals at rate lam and mean duration D, a device is busy with probability
    # 1 - exp(-lam D); choose lam so that this equals the curve (thinning from the peak rate).
    def lam_of(p: F64) -> F64:
        return -np.log1p(-np.minimum(p, 0.95)) / prof.session_mean_s

    lam_max = float(lam_of(np.array(pmax)))
    dev, t = _poisson_points(sim_rng, lam_max, s, e)
    hour, off = clock.hour_and_offday(t, est.site_zone[est.device_site[dev]])
    keep = sim_rng.random(len(t)) * lam_max < lam_of(np.where(off, we[hour], wd[hour]))
    dev, t = dev[keep], t[keep]
    mu = math.log(prof.session_mean_s) - SESSION_SIGMA**2 / 2
    dur = np.maximum(np.rint(sim_rng.lognormal(mu, SESSION_SIGMA, len(t))), 60).astype(np.int64)
    return Spells(dev, t, t + dur)


def _faults(rng: np.random.Generator, rates: Rates, est: Estate, clock: LocalClock, s: I64, e: I64
            ) -> tuple[Spells, NDArray[np.bool_]]:
    dev, t = _poisson_points(rng, est.failure_rate / HOUR, s, e)
    off = clock.offday(t, est.site_zone[est.device_site[dev]])
    mean = np.where(off, rates.mttr_weekend_h, rates.mttr_weekday_h) * HOUR
    dur = np.maximum(np.rint(rng.gamma(REPAIR_SHAPE, mean / REPAIR_SHAPE)), 60).astype(np.int64)
    return Spells(dev, t, t + dur), off


def _outages(rng: np.random.Generator, p: SimParams, est: Estate, periods: list[tuple[str, int, int]]
             ) -> list[dict[str, Any]]:
    """Every month, each bad site loses all its devices for several days (e.g. a power supply)."""
    out = []
    lo, hi = p.bad_outage_days
    for label, ms, me in periods:
        for site in est.bad_sites.tolist():
            start = ms + DAY + 60 * int(rng.integers(0, max(1, (me - ms) // 2 - DAY) // 60))
            end = min(start + int(rng.uniform(lo, hi) * DAY), me - HOUR)
            out.append({"site": est.site_ids[site], "site_index": site, "period": label, "start": start, "end": end})
    return out


def _site_spells(est: Estate, site_idx: list[int], start: list[int], end: list[int]) -> Spells:
    """Site-level intervals expanded to every device of the site."""
    order = np.argsort(est.device_site, kind="stable")
    by_site = np.split(order, np.cumsum(np.bincount(est.device_site, minlength=len(est.site_ids)))[:-1])
    parts = [Spells(by_site[k], np.full(len(by_site[k]), a), np.full(len(by_site[k]), b))
             for k, a, b in zip(site_idx, start, end)]
    return Spells.concat(Spells.empty(), *parts)


def _maintenance(rng: np.random.Generator, p: SimParams, est: Estate, clock: LocalClock,
                 periods: list[tuple[str, int, int]]) -> tuple[Spells, list[tuple[int, int, str, str]]]:
    """Planned site maintenance and device firmware updates at night (local), declared as
    exclusions; devices report `unavailable` meanwhile."""
    n_sites, n_dev = len(est.site_ids), est.n_devices
    sites: list[int] = []
    s_start: list[int] = []
    s_end: list[int] = []
    d_dev: list[int] = []
    d_start: list[int] = []
    d_end: list[int] = []
    excl: list[tuple[int, int, str, str]] = []
    for _, ms, me in periods:
        days = (me - ms) // DAY
        n = rng.poisson(p.maintenance_per_site_month, n_sites)
        site = np.repeat(np.arange(n_sites), n)
        wall = (clock.local(np.full(len(site), ms), est.site_zone[site]) // DAY
                + rng.integers(1, days - 1, len(site))) * DAY + 1800 * rng.integers(2, 8, len(site))  # 01:00-03:30
        start = clock.to_utc(wall, est.site_zone[site])
        end = start + HOUR * rng.integers(1, 5, len(site))
        sites += site.tolist()
        s_start += start.tolist()
        s_end += end.tolist()
        excl += [(a, b, f"site:{est.site_ids[k]}", "planned maintenance")
                 for k, a, b in zip(site.tolist(), start.tolist(), end.tolist())]
        n = rng.poisson(p.firmware_per_device_month, n_dev)
        dev = np.repeat(np.arange(n_dev), n)
        wall = (clock.local(np.full(len(dev), ms), est.site_zone[est.device_site[dev]]) // DAY
                + rng.integers(1, days - 1, len(dev))) * DAY + 60 * rng.integers(120, 300, len(dev))
        start = clock.to_utc(wall, est.site_zone[est.device_site[dev]])
        end = start + 60 * rng.integers(10, 40, len(dev))
        alive = (est.deployed[dev] <= start) & (end <= est.retired[dev])  # updates only reach live devices
        d_dev += dev[alive].tolist()
        d_start += start[alive].tolist()
        d_end += end[alive].tolist()
        excl += [(a, b, f"device:{est.device_ids[k]}", "firmware update")
                 for k, a, b in zip(dev[alive].tolist(), start[alive].tolist(), end[alive].tolist())]
    spells = Spells.concat(_site_spells(est, sites, s_start, s_end),
                           Spells(np.array(d_dev, np.int64), np.array(d_start, np.int64), np.array(d_end, np.int64)))
    excl.sort()
    return spells, excl


def _dropouts(rng: np.random.Generator, rates: Rates, s: I64, e: I64) -> Spells:
    dev, t = _poisson_points(rng, rates.dropout_rate_per_h / HOUR, s, e)
    mu = math.log(rates.dropout_mean_s) - DROPOUT_SIGMA**2 / 2
    dur = np.maximum(np.rint(rng.lognormal(mu, DROPOUT_SIGMA, len(t))), 30).astype(np.int64)
    return Spells(dev, t, t + dur)


# --------------------------------------------------------------------------- events


def _merged(sp: Spells, t0: int, t1: int, stride: int) -> tuple[I64, I64]:
    """Disjoint per-device intervals (the spells merged), as sorted device-major keys
    device * stride + (t - t0), clipped to the horizon."""
    a = np.clip(sp.start, t0, t1) - t0
    b = np.clip(sp.end, t0, t1) - t0
    ok = b > a
    ks, ke = sp.dev[ok] * stride + a[ok], sp.dev[ok] * stride + b[ok]
    order = np.argsort(ks, kind="stable")
    ks, ke = ks[order], ke[order]
    if len(ks) == 0:
        return ks, ke
    run = np.maximum.accumulate(ke)
    first = np.flatnonzero(np.concatenate([[True], ks[1:] > run[:-1]]))
    return ks[first], np.maximum.reduceat(ke, first)


def _inside(q: I64, ks: I64, ke: I64) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """For sorted keys q: which lie inside one of the disjoint intervals, and which are
    exactly an interval's start. A sweep (interval ends located in q), not a lookup per key."""
    i0, i1 = np.searchsorted(q, ks), np.searchsorted(q, ke)
    depth = np.bincount(i0, minlength=len(q) + 1) - np.bincount(i1, minlength=len(q) + 1)
    at_start = np.zeros(len(q), bool)
    hit = i0 < len(q)
    at_start[i0[hit][q[i0[hit]] == ks[hit]]] = True
    return np.cumsum(depth[:-1]) > 0, at_start


def _events(rng: np.random.Generator, rates: Rates, n_dev: int, s: I64, e: I64, first_dep: NDArray[np.bool_],
            layers: dict[str, Spells], t0: int, t1: int) -> tuple[I64, I64, NDArray[np.int8]]:
    hb = rates.heartbeat_s
    stride = t1 - t0 + 1
    # Devices running before the horizon beat on their own phase; new ones at deployment.
    first = s + np.where(first_dep, 0, rng.integers(0, hb, n_dev))
    count = np.maximum(-((first - e) // hb), 0)  # ceil((e - first) / hb)
    dev = np.repeat(np.arange(n_dev, dtype=np.int64), count)
    k = np.arange(len(dev), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    jitter = rng.integers(0, min(JITTER_S, hb // 10) + 1, len(dev))
    t = first[dev] + k * hb + np.where(k == 0, 0, jitter)
    del k, jitter
    keep = t < e[dev]
    beats = dev[keep] * stride + (t[keep] - t0)  # device-major and already sorted
    del dev, t, keep
    cd = np.concatenate([x for sp in layers.values() for x in (sp.dev, sp.dev)])
    ct = np.concatenate([x for sp in layers.values() for x in (sp.start, sp.end)])  # state changes
    ok = (ct >= s[cd]) & (ct < e[cd])
    changes = np.sort(cd[ok] * stride + (ct[ok] - t0))
    q = np.concatenate([beats, changes])
    del beats, changes
    q.sort(kind="stable")  # a merge of two sorted runs
    q = q[np.concatenate([[True], q[1:] != q[:-1]])]
    state = np.full(len(q), AVAILABLE, dtype=np.int8)
    for name, value in (("sessions", IN_USE), ("faults", FAULTED), ("maintenance", UNAVAILABLE)):
        inside, _ = _inside(q, *_merged(layers[name], t0, t1, stride))
        state[inside] = value
    inside, at_start = _inside(q, *_merged(layers["dropouts"], t0, t1, stride))
    state[inside] = OFFLINE
    keep = ~inside | at_start  # silent during a drop-out: one `offline` from the platform, then nothing
    q, state = q[keep], state[keep]
    dev, t = q // stride, q % stride
    # Time-major, like a telemetry stream; the state rides in the low bits of the sort key.
    key = ((t * n_dev + dev) << 3) | state
    del q, dev, t
    key.sort()
    state = (key & 7).astype(np.int8)
    key >>= 3
    return key // n_dev + t0, key % n_dev, state


# --------------------------------------------------------------------------- tickets


def _tickets(rng: np.random.Generator, est: Estate, clock: LocalClock, faults: Spells,
             outages: list[dict[str, Any]], t0: int, t1: int) -> dict[str, Any]:
    """One ticket per device fault (P2) and per site outage (P1), opened when detected; the
    response is quick in working hours, slower at night and on days off; resolved at repair."""
    real = faults.end - faults.start > 20 * 60  # shorter ones fix themselves before anyone looks
    site = np.concatenate([est.device_site[faults.dev[real]], np.array([o["site_index"] for o in outages], np.int64)])
    start = np.concatenate([faults.start[real], np.array([o["start"] for o in outages], np.int64)])
    end = np.concatenate([faults.end[real], np.array([o["end"] for o in outages], np.int64)])
    sev = np.concatenate([np.full(int(real.sum()), 2), np.ones(len(outages), np.int64)])
    opened = start + rng.integers(2 * 60, 20 * 60, len(start))
    hour, off = clock.hour_and_offday(opened, est.site_zone[site])
    working = ~off & (hour >= 8) & (hour < 18)
    responded = opened + np.rint(rng.exponential(np.where(working, 1800.0, 5400.0))).astype(np.int64)
    resolved = end + rng.integers(0, 10 * 60, len(end))
    responded = np.minimum(responded, resolved)
    keep = (opened >= t0) & (opened < t1)
    order = np.lexsort((sev[keep], site[keep], opened[keep]))
    pick = np.flatnonzero(keep)[order]
    return {
        "site": site[pick], "severity": sev[pick], "opened": opened[pick],
        "responded": np.where(responded[pick] < t1, responded[pick], -1),
        "resolved": np.where(resolved[pick] < t1, resolved[pick], -1),
    }


# --------------------------------------------------------------------------- whole run


def simulate_estate(p: SimParams) -> Simulation:
    """Generate the whole estate and its telemetry (pure: same parameters, same result)."""
    prof = p.validate()
    rates = Rates.of(p, prof)
    periods = _periods(p)
    t0, t1 = periods[0][1] - DAY, periods[-1][2]
    clock = LocalClock(prof.zones, t0 - 3 * DAY, t1 + 40 * DAY)
    est = _estate(p, prof, rates, periods, periods[0][1])
    s = np.maximum(est.deployed, t0)
    e = np.minimum(est.retired, t1)

    faults, offday = _faults(_rng(p.seed, "faults"), rates, est, clock, s, e)
    outages = _outages(_rng(p.seed, "outages"), p, est, periods)
    site_out = _site_spells(est, [o["site_index"] for o in outages], [o["start"] for o in outages],
                            [o["end"] for o in outages])
    # A site outage only hits the devices deployed when it starts.
    live = (est.deployed[site_out.dev] <= site_out.start) & (site_out.start < est.retired[site_out.dev])
    site_out = Spells(site_out.dev[live], site_out.start[live], site_out.end[live])
    cause = np.concatenate([np.zeros(len(faults.dev), np.int64), np.ones(len(site_out.dev), np.int64)])
    all_faults = Spells.concat(faults, site_out)
    offday = np.concatenate([offday, clock.offday(site_out.start, est.site_zone[est.device_site[site_out.dev]])])
    maint, exclusions = _maintenance(_rng(p.seed, "maintenance"), p, est, clock, periods)
    layers = {
        "sessions": _sessions(_rng(p.seed, "sessions"), prof, est, clock, s, e),
        "faults": all_faults,
        "maintenance": maint,
        "dropouts": _dropouts(_rng(p.seed, "dropouts"), rates, s, e),
    }
    ts, dev, state = _events(_rng(p.seed, "heartbeats"), rates, est.n_devices, s, e, est.deployed >= t0, layers, t0, t1)
    tickets = _tickets(_rng(p.seed, "tickets"), est, clock, faults, outages, periods[0][1], t1)
    truth_faults = {"dev": all_faults.dev, "start": all_faults.start, "end": all_faults.end,
                    "offday": offday, "cause": cause}
    for o in outages:
        o.pop("site_index")
    return Simulation(p, prof, rates, clock, periods, (t0, t1), est, ts, dev, state, truth_faults,
                      exclusions, tickets, outages)
