"""An independent reference for the time KPIs: sample every `step` seconds and ask, at that
instant, what each device is doing and what the site's wall clock reads. Exact when every
boundary (events, exclusions, deployments, stale_after, business hours) is a multiple of
`step`; slow by design (pure Python, no intervals)."""
from __future__ import annotations

import bisect
from datetime import datetime
from zoneinfo import ZoneInfo

from oracle.core.terms import Terms
from oracle.evidence.load import Evidence
from oracle.evidence.schema import NO_END

UP_STATES = {0, 1}  # available, in_use


def _class(terms: Terms, state: int | None) -> str:
    if state in UP_STATES:
        return "up"
    if state == 2:
        return "down"
    if state == 3:
        return terms.maintenance_state
    return terms.missing_data  # offline (4) or unknown (None)


def brute_force(terms: Terms, ev: Evidence, w0: int, w1: int, step: int = 60) -> dict[tuple[str, str], tuple[int, int]]:
    """(objective id, subject) -> (good, counted) for every time-KPI objective and subject."""
    remove = terms.exclusion_mode == "remove"
    events: dict[int, tuple[list[int], list[int]]] = {}
    for d, t, s in zip(ev.ev_device.tolist(), ev.ev_ts.tolist(), ev.ev_state.tolist()):
        events.setdefault(d, ([], []))
        events[d][0].append(t)
        events[d][1].append(s)
    zones = [ZoneInfo(s.timezone) for s in terms.sites]
    nsite, ndev = len(terms.sites), ev.n_devices
    site_good = {o.id: [0] * nsite for o in terms.objectives}
    site_count = {o.id: [0] * nsite for o in terms.objectives}
    dev_good, dev_count = [0] * ndev, [0] * ndev
    for t in range(w0, w1, step):
        state: list[int | None] = []
        for d in range(ndev):
            ts, ss = events.get(d, ([], []))
            i = bisect.bisect_right(ts, t) - 1
            state.append(ss[i] if i >= 0 and t - ts[i] < terms.stale_after else None)
        deployed = [int(ev.deployed[d]) <= t < (int(ev.retired[d]) if ev.retired[d] != NO_END else 2**62)
                    for d in range(ndev)]
        for si, site in enumerate(terms.sites):
            local = datetime.fromtimestamp(t, zones[si])
            minute = local.hour * 60 + local.minute
            if not any(a <= minute < b for a, b in site.business_hours[local.weekday()]):
                continue
            excluded = any(x.start <= t < x.end and x.scope in ("*", f"site:{site.id}") for x in ev.exclusions)
            if excluded and remove:
                continue
            devs = [d for d in range(ndev) if int(ev.device_site[d]) == si and deployed[d]]
            for o in terms.objectives:
                if o.kpi == "site_availability":
                    ok = excluded or sum(state[d] == 0 for d in devs) >= o.min_available
                elif o.kpi == "site_max_down":
                    ok = excluded or sum(_class(terms, state[d]) == "down" for d in devs) <= o.max_down
                else:
                    continue
                site_count[o.id][si] += step
                site_good[o.id][si] += step * ok
            for d in devs:
                w = int(ev.device_weight[d])
                dev_excl = any(x.start <= t < x.end and x.scope == f"device:{ev.device_ids[d]}" for x in ev.exclusions)
                if dev_excl and remove:
                    continue
                if excluded or dev_excl:
                    dev_count[d] += w * step
                    dev_good[d] += w * step
                    continue
                cls = _class(terms, state[d])
                if cls == "exclude":
                    continue
                dev_count[d] += w * step
                dev_good[d] += w * step * (cls == "up")
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for o in terms.objectives:
        if o.kpi == "device_uptime":
            per_site_g = [sum(dev_good[d] for d in range(ndev) if ev.device_site[d] == si) for si in range(nsite)]
            per_site_c = [sum(dev_count[d] for d in range(ndev) if ev.device_site[d] == si) for si in range(nsite)]
            for d in range(ndev):
                out[(o.id, ev.device_ids[d])] = (dev_good[d], dev_count[d])
        elif o.kpi.startswith("site_"):
            per_site_g, per_site_c = site_good[o.id], site_count[o.id]
        else:
            continue
        for si, s in enumerate(terms.sites):
            out[(o.id, s.id)] = (per_site_g[si], per_site_c[si])
        out[(o.id, "*")] = (sum(per_site_g), sum(per_site_c))
    return out


def brute_force_regulatory(terms: Terms, ev: Evidence, w0: int, w1: int,
                           step: int = 60) -> dict[str, dict[str, int]]:
    """Per device id, the regulatory KPIs' raw seconds by sampling every `step` seconds:
    NEVI `deployed`, `outage` (not available/in use, or stale) and `excluded_outage` (outage
    under an exclusion row of the device, its site or `*`); PCPR, inside the site's business
    hours: `open`, `working`, `not_working` (faulted, unavailable, offline), `ineligible`."""
    events: dict[int, tuple[list[int], list[int]]] = {}
    for d, t, s in zip(ev.ev_device.tolist(), ev.ev_ts.tolist(), ev.ev_state.tolist()):
        events.setdefault(d, ([], []))
        events[d][0].append(t)
        events[d][1].append(s)
    zones = [ZoneInfo(s.timezone) for s in terms.sites]
    keys = ("deployed", "outage", "excluded_outage", "open", "working", "not_working", "ineligible")
    out = {did: dict.fromkeys(keys, 0) for did in ev.device_ids}
    for t in range(w0, w1, step):
        for d, did in enumerate(ev.device_ids):
            retired = int(ev.retired[d]) if ev.retired[d] != NO_END else 2**62
            if not int(ev.deployed[d]) <= t < retired:
                continue
            ts, ss = events.get(d, ([], []))
            i = bisect.bisect_right(ts, t) - 1
            state = ss[i] if i >= 0 and t - ts[i] < terms.stale_after else 5  # stale: unknown
            si = int(ev.device_site[d])
            site = terms.sites[si]
            row = out[did]
            row["deployed"] += step
            if state not in UP_STATES:
                row["outage"] += step
                if any(x.start <= t < x.end and x.scope in ("*", f"site:{site.id}", f"device:{did}")
                       for x in ev.exclusions):
                    row["excluded_outage"] += step
            local = datetime.fromtimestamp(t, zones[si])
            minute = local.hour * 60 + local.minute
            if any(a <= minute < b for a, b in site.business_hours[local.weekday()]):
                row["open"] += step
                kind = "working" if state in UP_STATES else "ineligible" if state == 5 else "not_working"
                row[kind] += step
    return out
