"""Builders for terms files and evidence folders used across the oracle tests."""
from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # bruteforce.py

BASE_TERMS = """\
schema: slacomp/v1
agreement: acme-ev-2026
timezone: {tz}
currency: {{symbol: USDC, decimals: 6}}
monthly_fee: "5000"
telemetry: {{stale_after: {stale}, missing_data: {missing}, maintenance_state: {maint}}}
exclusion_mode: {mode}
sites:
{sites}
objectives:
{objectives}
credit_cap_bps: 10000
term: {{first_period: "{first}", periods: 12}}
"""

AVAIL = ("  - {id: avail, kpi: site_availability, scope: per_site, min_available: 1, target_bps: 9000,"
         " credits: [{below_bps: 9000, credit_bps: 10000}]}")
MAXDOWN = ("  - {id: maxdown, kpi: site_max_down, scope: per_site, max_down: 1, target_bps: 9500,"
           " credits: [{below_bps: 9500, credit_bps: 2500}]}")
UPTIME = ("  - {id: uptime, kpi: device_uptime, scope: estate, target_bps: 9900,"
          " credits: [{below_bps: 9900, credit_bps: 1000}, {below_bps: 9500, credit_bps: 3000}]}")
DEVUP = ("  - {id: devup, kpi: device_uptime, scope: per_device, target_bps: 9900, device_fee: \"10\","
         " credits: [{below_bps: 9900, credit_bps: 5000}]}")
TIME_OBJECTIVES = (AVAIL, MAXDOWN, UPTIME, DEVUP)


def terms_text(sites: Sequence[str], objectives: Sequence[str] = TIME_OBJECTIVES, *, tz: str = "Europe/London",
               stale: str = "40d", missing: str = "down", maint: str = "exclude", mode: str = "remove",
               first: str = "2026-10") -> str:
    return BASE_TERMS.format(tz=tz, stale=stale, missing=missing, maint=maint, mode=mode, first=first,
                             sites="\n".join(sites), objectives="\n".join(objectives))


def site(sid: str, hours: str | None = None, tz: str | None = None, fee: str = "1000") -> str:
    parts = [f"id: {sid}", f'fee: "{fee}"']
    if tz:
        parts.append(f"timezone: {tz}")
    if hours:
        parts.append(f"business_hours: {hours}")
    return "  - {" + ", ".join(parts) + "}"


def write_csv(path: Path, header: str, rows: Iterable[Sequence[object]]) -> None:
    path.write_text(header + "\n" + "".join(",".join(str(c) for c in r) + "\n" for r in rows))


def write_evidence(folder: Path, devices: Iterable[Sequence[object]], events: Iterable[Sequence[object]],
                   exclusions: Iterable[Sequence[object]] | None = None,
                   tickets: Iterable[Sequence[object]] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "devices.csv", "device_id,site_id,weight,deployed_at,retired_at", devices)
    write_csv(folder / "events.csv", "ts,device_id,state", events)
    if exclusions is not None:
        write_csv(folder / "exclusions.csv", "start,end,scope,reason", exclusions)
    if tickets is not None:
        write_csv(folder / "tickets.csv", "ticket_id,site_id,severity,opened_at,responded_at,resolved_at", tickets)
    return folder
