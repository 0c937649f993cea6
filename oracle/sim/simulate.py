"""Seeded, deterministic simulator of a connected-device estate: writes a slacomp/v1 terms
file, the evidence folder the KPI engine reads, and the ground truth it was drawn from.

    from oracle.sim.simulate import SimParams, simulate
    summary = simulate(SimParams(sites=20, devices_per_site=4, months=3, seed=7, bad_sites=2), "out/")
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from oracle.sim.model import SimError, SimParams, Simulation, simulate_estate
from oracle.sim.output import write_all
from oracle.sim.profiles import PROFILES

__all__ = ["PROFILES", "SimError", "SimParams", "SimSummary", "Simulation", "simulate", "simulate_estate"]


@dataclass(frozen=True)
class SimSummary:
    out: Path
    devices: int
    events: int
    exclusions: int
    tickets: int
    generate_s: float
    write_s: float
    bad_sites: tuple[str, ...]

    def to_json_dict(self) -> dict[str, object]:
        return {"out": str(self.out), "devices": self.devices, "events": self.events, "exclusions": self.exclusions,
                "tickets": self.tickets, "bad_sites": list(self.bad_sites),
                "generate_s": round(self.generate_s, 3), "write_s": round(self.write_s, 3),
                "files": ["terms.yaml", "evidence/devices.csv", "evidence/events.csv", "evidence/exclusions.csv",
                          "evidence/tickets.csv", "truth.json", "faults.csv"]}


def simulate(params: SimParams, out: str | Path) -> SimSummary:
    """Generate the estate of `params` and write OUT/terms.yaml, OUT/evidence/{devices,events,
    exclusions,tickets}.csv, OUT/truth.json and OUT/faults.csv. Raises SimError on bad params."""
    t0 = time.perf_counter()
    sim = simulate_estate(params)
    t1 = time.perf_counter()
    counts = write_all(sim, Path(out))
    t2 = time.perf_counter()
    return SimSummary(Path(out), counts["devices"], counts["events"], counts["exclusions"], counts["tickets"],
                      t1 - t0, t2 - t1, tuple(sim.estate.site_ids[i] for i in sim.estate.bad_sites.tolist()))
