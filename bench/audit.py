"""Audit benchmark: replay a year of an estate (12 months x 100 sites x 40 devices, about 3M events a
month) settled on a real Anvil, and report the time and peak memory of `audit_agreement`.

    .venv/bin/python bench/audit.py [--sites 100] [--devices 40] [--months 12]

Set-up (not timed): simulate the estate, freeze one bundle per month (the month's rows plus a day
before it for opening states), sign and settle every month on-chain. Timed: the audit itself
(verify from logs + load, hash-check and recompute every bundle)."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polars as pl  # noqa: E402
from eth_account import Account  # noqa: E402

from oracle.chain import devchain  # noqa: E402
from oracle.chain.config import config_from_terms  # noqa: E402
from oracle.chain.report import report_from_result  # noqa: E402
from oracle.chain.signing import sign_for  # noqa: E402
from oracle.chain.tx import create_agreement, deploy_factory, deposit, submit_report  # noqa: E402
from oracle.core.period import (
    period_bounds,
    period_labels,  # noqa: E402
)
from oracle.core.terms import load_terms  # noqa: E402
from oracle.engine.replay import freeze_period  # noqa: E402
from oracle.sim.simulate import SimParams, simulate  # noqa: E402
from oracle.verify.audit import audit_agreement  # noqa: E402
from slacomp.demo import DEMO_ORACLE_KEYS  # noqa: E402

DAY = 86_400


class MonthSplitter:
    """Cuts the term's evidence into one month's files: its events plus a day before (opening
    states); the other (small) files whole."""

    def __init__(self, evidence: Path):
        self.others = {p.name: p.read_bytes() for p in evidence.iterdir() if p.name != "events.csv"}
        self.events = pl.read_csv(evidence / "events.csv", schema_overrides={"ts": pl.Utf8})
        self.ts = self.events["ts"].str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC").dt.epoch("s")

    def files(self, start: int, end: int) -> dict[str, bytes]:
        month = self.events.filter((self.ts >= start - DAY) & (self.ts < end))
        return self.others | {"events.csv": month.write_csv().encode()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", type=int, default=100)
    ap.add_argument("--devices", type=int, default=40)
    ap.add_argument("--months", type=int, default=12)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="slacomp-audit-bench-"))
    t = time.perf_counter()
    summary = simulate(SimParams(sites=args.sites, devices_per_site=args.devices, months=args.months,
                                 start="2025-11", seed=11, bad_sites=3, heartbeat_s=3600), work / "estate")
    print(f"simulated {summary.events:,} events in {time.perf_counter() - t:.1f}s", flush=True)
    terms = load_terms(work / "estate" / "terms.yaml")
    store = work / "store"
    oracles = [Account.from_key(k).address for k in DEMO_ORACLE_KEYS]
    with devchain.start("anvil") as chain:
        w3 = chain.w3()
        vendor, customer, relayer = w3.eth.accounts[:3]
        config = config_from_terms(terms, customer=customer, asset="0x" + "00" * 20, oracles=oracles, threshold=2)
        agreement, _ = create_agreement(w3, deploy_factory(w3, vendor), vendor, config, customer=customer)
        deposit(w3, agreement, vendor, 10**21)
        t = time.perf_counter()
        splitter = MonthSplitter(work / "estate" / "evidence")
        for index, label in enumerate(period_labels(terms)):
            start, end = period_bounds(terms, label)
            _, result = freeze_period(store, (work / "estate" / "terms.yaml").read_bytes(),
                                     splitter.files(start, end), label)
            if w3.eth.get_block("latest")["timestamp"] <= end:
                w3.provider.make_request("evm_mine", [end + 1])
            report = report_from_result(result, index)
            submit_report(w3, agreement, config, report,
                          sign_for(report, config, w3.eth.chain_id, agreement.address, DEMO_ORACLE_KEYS[:2]), relayer)
        print(f"bundled and settled {args.months} months in {time.perf_counter() - t:.1f}s", flush=True)

        del splitter
        # the audit runs in a fresh process, so its time and peak memory are its own
        out = subprocess.run([sys.executable, __file__, "--audit-only", chain.url, agreement.address,
                              str(work / "estate" / "terms.yaml"), str(store)], capture_output=True, text=True)
        if out.returncode not in (0, 1):
            print(out.stderr)
            return 2
        ok_text, elapsed_text, peak_text = out.stdout.split("\t")
        ok, elapsed, peak = ok_text == "PASS", float(elapsed_text), float(peak_text)
    print()
    print("| months | sites | devices | events | audit time (s) | peak RSS (MiB) | result | target |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.months} | {args.sites} | {args.sites * args.devices:,} | {summary.events:,} | {elapsed:.1f} | "
          f"{peak:,.0f} | {'PASS' if ok else 'FAIL'} | <= 120 s |")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok and elapsed <= 120 else 1


def audit_only(rpc: str, address: str, terms_path: str, store: str) -> int:
    from web3 import Web3

    from oracle.engine.memory import peak_rss_mib, tune_allocator

    tune_allocator()  # as `slacomp audit` does
    t = time.perf_counter()
    audit = audit_agreement(Web3(Web3.HTTPProvider(rpc)), address, load_terms(terms_path), store)
    elapsed = time.perf_counter() - t
    if not audit.ok:
        print(audit.first_discrepancy(), file=sys.stderr)
    print(f"{'PASS' if audit.ok else 'FAIL'}\t{elapsed:.2f}\t{peak_rss_mib():.0f}", end="")
    return 0 if audit.ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--audit-only":
        raise SystemExit(audit_only(*sys.argv[2:]))
    raise SystemExit(main())
