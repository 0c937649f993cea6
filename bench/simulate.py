"""Benchmark of the simulator: EV-charger estates sized for about 1M, 3M and 10M events (one
month, 4 chargers per site, 2 bad sites), generated and written to CSV; each size runs in a
fresh process so its peak memory is its own. Target: 10M events in under 60 s.

    .venv/bin/python bench/simulate.py            # 1M, 3M, 10M events
    .venv/bin/python bench/simulate.py --quick    # 100k, 300k events
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEVICES_PER_SITE = 4
TARGET_S = 60.0


def sites_for(n_events: int) -> int:
    """Sites needed for about n_events, from the events per site of a small estate."""
    from oracle.sim.simulate import SimParams, simulate_estate

    sim = simulate_estate(SimParams(sites=40, devices_per_site=DEVICES_PER_SITE, months=1, seed=1))
    return max(1, round(n_events / (len(sim.events_ts) / 40)))


def run_once(sites: int) -> dict[str, float]:
    from oracle.sim.simulate import SimParams, simulate

    out = Path(tempfile.mkdtemp(prefix="slacomp-sim-bench-"))
    try:
        t0 = time.perf_counter()
        s = simulate(SimParams(sites=sites, devices_per_site=DEVICES_PER_SITE, months=1, seed=1, bad_sites=2), out)
        total = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        return {"events": s.events, "devices": s.devices, "generate_s": s.generate_s, "write_s": s.write_s,
                "total_s": total, "events_mb": (out / "evidence" / "events.csv").stat().st_size / 1e6,
                "folder_mb": size / 1e6, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: sites
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(run_once(args.one)))
        return
    sizes = (100_000, 300_000) if args.quick else (1_000_000, 3_000_000, 10_000_000)
    print(f"{'events':>11} {'devices':>8} {'generate s':>10} {'write s':>8} {'total s':>8} {'events/s':>10} "
          f"{'events.csv MB':>13} {'folder MB':>9} {'peak MiB':>8}")
    worst = 0.0
    for n in sizes:
        proc = subprocess.run([sys.executable, __file__, "--one", str(sites_for(n))], check=True,
                              capture_output=True, text=True, cwd=ROOT)
        r = json.loads(proc.stdout)
        worst = max(worst, r["total_s"] * 10_000_000 / r["events"])
        print(f"{int(r['events']):>11,} {int(r['devices']):>8,} {r['generate_s']:>10.2f} {r['write_s']:>8.2f} "
              f"{r['total_s']:>8.2f} {r['events'] / r['total_s']:>10,.0f} {r['events_mb']:>13.1f} "
              f"{r['folder_mb']:>9.1f} {r['peak_mib']:>8.0f}")
    verdict = "OK" if worst < TARGET_S else "SLOW"
    print(f"time per 10M events (worst size): {worst:.1f} s (target < {TARGET_S:.0f} s): {verdict}")


if __name__ == "__main__":
    main()
