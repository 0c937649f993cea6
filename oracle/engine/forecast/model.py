"""The forecast's statistical model (described in oracle.engine.forecast): its knobs, local time
at the sites, the evidence as it stood at the forecast instant, and the fit of spell rates,
spell durations and in-use shares on the window before it."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np
from numpy.typing import NDArray

from oracle.core.calendar import iso_utc, offset_pieces, zone
from oracle.core.terms import Terms
from oracle.engine.timeline import class_tables, device_segments
from oracle.evidence.load import Evidence, window_events
from oracle.evidence.schema import AVAILABLE, IN_USE

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
HOUR, DAY = 3600, 86_400


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


def site_zones(terms: Terms) -> tuple[list[str], I64]:
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
    s_shape, s_rate = _gamma_prior(site_n.astype(np.float64, copy=False), site_t.astype(np.float64, copy=False), mean)
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
    zones, site_zone = site_zones(terms)
    local = LocalTime(zones, as_of - int(params.history_days * DAY), as_of, params.holidays)
    return fit_model(terms, evidence_before(evidence, as_of), as_of, params, local, site_zone)
