"""Write a simulation to disk: the terms file, the evidence folder (docs/terms.md §3) and the
ground truth (truth.json, faults.csv) a forecaster can be scored against."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from oracle.core.calendar import iso_utc
from oracle.evidence.schema import NO_END, STATES
from oracle.sim.clock import HOUR
from oracle.sim.model import (
    BAD_SITE_RATE_FACTOR,
    CAUSES,
    DROPOUT_SIGMA,
    FRAILTY_SHAPE,
    JITTER_S,
    REPAIR_SHAPE,
    SESSION_SIGMA,
    Simulation,
)
from oracle.sim.profiles import objectives_yaml

TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_DT = pl.Datetime("us", "UTC")


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _parse_duration(text: str) -> int:
    return int(text[:-1]) * {"d": 86_400, "h": 3600, "m": 60, "s": 1}[text[-1]]


def stale_after_s(sim: Simulation) -> int:
    """The profile's staleness limit, widened if the heartbeat was slowed: a healthy device
    must never look unknown (at least three heartbeats fit in it)."""
    return max(_parse_duration(sim.profile.stale_after), 3 * sim.rates.heartbeat_s + 2 * JITTER_S)


def agreement_id(sim: Simulation) -> str:
    return sim.params.agreement or f"sim-{sim.profile.name.replace('_', '-')}-{sim.params.seed}"


def terms_yaml(sim: Simulation) -> str:
    p, prof, est = sim.params, sim.profile, sim.estate
    monthly_fee = 2 * prof.site_fee * p.sites
    lines = [
        f"# Simulated estate: {p.sites} {prof.name} sites x {p.devices_per_site} devices, seed {p.seed}"
        " (slacomp simulate; ground truth in truth.json).",
        "schema: slacomp/v1",
        f"agreement: {agreement_id(sim)}",
        f"timezone: {p.timezone}",
        "currency: {symbol: USDC, decimals: 6}",
        f'monthly_fee: "{monthly_fee}"',
        f"telemetry: {{stale_after: {_duration(stale_after_s(sim))}, missing_data: down, maintenance_state: exclude}}",
        "exclusion_mode: remove",
        "sites:",
    ]
    for i, sid in enumerate(est.site_ids):
        hours = est.site_hours[i]
        lines.append(f"  - {{id: {sid}, timezone: {sim.clock.zones[est.site_zone[i]]}, fee: \"{prof.site_fee}\""
                     + (f", business_hours: {hours}" if hours else "") + "}")
    lines += ["objectives:", *objectives_yaml(prof, p.devices_per_site),
              "credit_cap_bps: 10000", f'term: {{first_period: "{p.start}", periods: {p.months}}}']
    return "\n".join(lines) + "\n"


def _instants(t: np.ndarray, missing: int | None = None) -> pl.Series:
    """Epoch seconds as a UTC datetime column; `missing` marks empty cells."""
    t = np.asarray(t, dtype=np.int64)
    if missing is None:
        return pl.Series(t * 1_000_000).cast(_DT)
    gone = t == missing
    s = pl.Series("v", np.where(gone, 0, t) * 1_000_000).cast(_DT)
    return s.to_frame().select(pl.when(pl.Series(gone)).then(None).otherwise(pl.col("v"))).to_series()


def _ids(names: list[str], idx: np.ndarray) -> pl.Series:
    return pl.Series(names, dtype=pl.String).gather(pl.Series(np.asarray(idx, dtype=np.int64)))


def write_evidence(sim: Simulation, folder: Path) -> dict[str, int]:
    """devices.csv, events.csv, exclusions.csv and tickets.csv; returns row counts."""
    folder.mkdir(parents=True, exist_ok=True)
    est = sim.estate
    pl.DataFrame({
        "device_id": est.device_ids,
        "site_id": _ids(est.site_ids, est.device_site),
        "weight": est.weight,
        "deployed_at": _instants(est.deployed),
        "retired_at": _instants(est.retired, NO_END),
    }).write_csv(folder / "devices.csv", datetime_format=TS_FORMAT)
    pl.DataFrame({
        "ts": _instants(sim.events_ts),
        "device_id": _ids(est.device_ids, sim.events_dev),
        "state": _ids(list(STATES), sim.events_state),
    }).write_csv(folder / "events.csv", datetime_format=TS_FORMAT)
    ex = sim.exclusions
    pl.DataFrame({
        "start": _instants(np.array([x[0] for x in ex], dtype=np.int64)),
        "end": _instants(np.array([x[1] for x in ex], dtype=np.int64)),
        "scope": pl.Series([x[2] for x in ex], dtype=pl.String),
        "reason": pl.Series([x[3] for x in ex], dtype=pl.String),
    }).write_csv(folder / "exclusions.csv", datetime_format=TS_FORMAT)
    tk = sim.tickets
    n = len(tk["opened"])
    pl.DataFrame({
        "ticket_id": [f"T{i + 1:06d}" for i in range(n)],
        "site_id": _ids(est.site_ids, tk["site"]),
        "severity": [f"P{s}" for s in tk["severity"].tolist()],
        "opened_at": _instants(tk["opened"]),
        "responded_at": _instants(tk["responded"], -1),
        "resolved_at": _instants(tk["resolved"], -1),
    }).write_csv(folder / "tickets.csv", datetime_format=TS_FORMAT)
    return {"devices": est.n_devices, "events": len(sim.events_ts), "exclusions": len(ex), "tickets": n}


def write_faults(sim: Simulation, path: Path) -> None:
    """Every fault spell (ground truth, before overlaps merge): device, cause, start, end."""
    f, est = sim.faults, sim.estate
    order = np.lexsort((f["dev"], f["start"]))
    pl.DataFrame({
        "device_id": _ids(est.device_ids, f["dev"][order]),
        "site_id": _ids(est.site_ids, est.device_site[f["dev"][order]]),
        "cause": _ids(list(CAUSES), f["cause"][order]),
        "start": _instants(f["start"][order]),
        "end": _instants(f["end"][order]),
        "repair_h": np.round((f["end"][order] - f["start"][order]) / HOUR, 4),
        "weekend_or_holiday": f["offday"][order],
    }).write_csv(path, datetime_format=TS_FORMAT)


def truth(sim: Simulation) -> dict[str, Any]:
    """The parameters the estate was generated from, and what the draw actually produced."""
    p, r, est, prof, f = sim.params, sim.rates, sim.estate, sim.profile, sim.faults
    dev_fault = f["cause"] == 0
    rep_h = (f["end"] - f["start"]) / HOUR

    def mean(mask: np.ndarray) -> float | None:
        return round(float(rep_h[mask].mean()), 4) if mask.any() else None

    t0, t1 = sim.horizon
    device_hours = float((np.minimum(est.retired, t1) - np.maximum(est.deployed, t0)).clip(0).sum() / HOUR)
    new = est.deployed >= t0
    return {
        "generator": "slacomp simulate",
        "params": {**asdict(p), "bad_outage_days": list(p.bad_outage_days)},
        "agreement": agreement_id(sim),
        "horizon": {"start": iso_utc(t0), "end": iso_utc(t1),
                    "note": "events start a day before the first period so each device has an opening state"},
        "periods": [{"label": lb, "start": iso_utc(a), "end": iso_utc(b)} for lb, a, b in sim.periods],
        "telemetry": {"heartbeat_s": r.heartbeat_s, "heartbeat_jitter_s": JITTER_S, "stale_after_s": stale_after_s(sim),
                      "dropouts_silent": True,
                      "note": "a drop-out emits one `offline` event at its start, then nothing until it ends"},
        "failures": {
            "rate_per_device_hour": r.failure_rate_per_h,
            "per_device_rate": f"Gamma(shape={FRAILTY_SHAPE}, mean=rate_per_device_hour), x{BAD_SITE_RATE_FACTOR}"
                               " at bad sites; faults are a Poisson process per device while deployed",
            "bad_site_rate_factor": BAD_SITE_RATE_FACTOR,
            "per_device_rate_per_hour": {d: round(float(x), 9) for d, x in zip(est.device_ids, est.failure_rate)},
        },
        "repairs": {
            "distribution": f"Gamma(shape={REPAIR_SHAPE}) with the mean below",
            "mttr_weekday_h": r.mttr_weekday_h,
            "mttr_weekend_h": r.mttr_weekend_h,
            "weekend_rule": "a fault that starts on a Saturday, Sunday or public holiday (site local time)"
                            " takes the weekend mean",
            "holidays": sim.clock.holiday_dates(t0, t1),
        },
        "dropouts": {"rate_per_device_hour": r.dropout_rate_per_h, "mean_duration_s": r.dropout_mean_s,
                     "distribution": f"lognormal(sigma={DROPOUT_SIGMA})"},
        "occupancy": {"weekday": list(prof.occupancy_weekday), "weekend_or_holiday": list(prof.occupancy_weekend),
                      "session_mean_s": prof.session_mean_s,
                      "session_distribution": f"lognormal(sigma={SESSION_SIGMA})",
                      "note": "probability a device is in use per local hour"},
        "maintenance": {"site_windows_per_site_month": p.maintenance_per_site_month,
                        "firmware_updates_per_device_month": p.firmware_per_device_month,
                        "note": "declared in exclusions.csv; devices report `unavailable`"},
        "bad_sites": [est.site_ids[i] for i in est.bad_sites.tolist()],
        "outages": [{**o, "start": iso_utc(o["start"]), "end": iso_utc(o["end"])} for o in sim.outages],
        "realized": {
            "devices": est.n_devices,
            "devices_deployed_during_term": int(new.sum()),
            "devices_retired_during_term": int((est.retired < NO_END).sum()),
            "device_hours": round(device_hours, 2),
            "events": len(sim.events_ts),
            "device_faults": int(dev_fault.sum()),
            "device_faults_per_device_hour": round(int(dev_fault.sum()) / device_hours, 9) if device_hours else None,
            "mean_repair_h_weekday": mean(dev_fault & ~f["offday"]),
            "mean_repair_h_weekend_or_holiday": mean(dev_fault & f["offday"]),
            "tickets": len(sim.tickets["opened"]),
            "exclusions": len(sim.exclusions),
        },
    }


def write_all(sim: Simulation, out: Path) -> dict[str, int]:
    """DIR/terms.yaml, DIR/evidence/*.csv, DIR/truth.json and DIR/faults.csv."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "terms.yaml").write_text(terms_yaml(sim))
    counts = write_evidence(sim, out / "evidence")
    write_faults(sim, out / "faults.csv")
    (out / "truth.json").write_text(json.dumps(truth(sim), indent=1) + "\n")
    return counts
