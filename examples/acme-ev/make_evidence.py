"""Regenerate the example evidence (deterministic): October 2026 at two car parks.

north: 4 chargers, all faulted from Tue 13 Oct 06:00Z to Fri 16 Oct 06:00Z (a 3-day outage).
south: 3 chargers, S2 faulted for 5 days from 5 Oct 00:00Z; a planned maintenance exclusion.
Every charger reports every 30 minutes (stale_after is 1h); chargers alternate idle/in use.
"""
from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

OUT = Path(__file__).resolve().parent / "evidence"
UTC = timezone.utc
START = datetime(2026, 9, 30, 23, 0, tzinfo=UTC)  # 1 Oct 00:00 in London (BST)
END = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
DEVICES = [("N1", "north"), ("N2", "north"), ("N3", "north"), ("N4", "north"),
           ("S1", "south"), ("S2", "south"), ("S3", "south")]
OUTAGES = {
    "north": (datetime(2026, 10, 13, 6, tzinfo=UTC), datetime(2026, 10, 16, 6, tzinfo=UTC)),
    "S2": (datetime(2026, 10, 5, 0, tzinfo=UTC), datetime(2026, 10, 10, 0, tzinfo=UTC)),
}


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def state(device: str, site: str, t: datetime, k: int) -> str:
    for key in (device, site):
        if key in OUTAGES and OUTAGES[key][0] <= t < OUTAGES[key][1]:
            return "faulted"
    return "in_use" if (k + int(device[1])) % 5 == 0 else "available"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    with open(OUT / "devices.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "site_id", "weight", "deployed_at", "retired_at"])
        for device, site in DEVICES:
            w.writerow([device, site, 1, "2026-01-01T00:00:00Z", ""])
    with open(OUT / "events.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ts", "device_id", "state"])
        for device, site in DEVICES:
            t, k = START - timedelta(minutes=30), 0
            while t < END:
                w.writerow([iso(t), device, state(device, site, t, k)])
                t, k = t + timedelta(minutes=30), k + 1
    with open(OUT / "exclusions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["start", "end", "scope", "reason"])
        w.writerow(["2026-10-20T02:00:00Z", "2026-10-20T04:00:00Z", "site:south", "planned maintenance"])


if __name__ == "__main__":
    main()
