"""Benchmark of the oracle node: (1) 1,000 agreements, each with one month of small telemetry,
closed and settled on Anvil by ONE oracle process (`Service.tick`: ingest the inbox, close, bundle,
KPI engine, sign 2-of-3, send, confirm), and (2) the ingest rate of one 10-million-event file into
SQLite. Creating the agreements and generating the files is setup (not timed).

Every agreement serves the same small evidence (the example estate's 7 devices, thinned to a
heartbeat every 6 hours plus every state change: ~1k events), so bundles are identical in content
but each agreement has its own rows, report, signatures and transaction. Targets: >= 50
agreements settled/s end to end, >= 300,000 events/s ingested.

    .venv/bin/python bench/oracle.py                    # 1,000 agreements, 10M events
    .venv/bin/python bench/oracle.py --quick            # 100 agreements, 1M events
    .venv/bin/python bench/oracle.py --block-time 1     # settle on a chain that mines every second
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EXAMPLE = ROOT / "examples" / "acme-ev"
TARGET_AGREEMENTS_PER_S = 50.0
TARGET_EVENTS_PER_S = 300_000.0
HEARTBEAT_H = 6


def small_evidence(out: Path) -> int:
    """The example's evidence with events thinned to a 6-hourly heartbeat plus every state change."""
    out.mkdir(parents=True)
    for name in ("devices.csv", "exclusions.csv"):
        shutil.copy(EXAMPLE / "evidence" / name, out / name)
    last: dict[str, str] = {}
    kept = 0
    with open(EXAMPLE / "evidence" / "events.csv", newline="") as src, \
            open(out / "events.csv", "w", newline="") as dst:
        reader, writer = csv.reader(src), csv.writer(dst, lineterminator="\n")
        writer.writerow(next(reader))
        for ts, device, state in reader:
            heartbeat = ts[14:16] == "00" and int(ts[11:13]) % HEARTBEAT_H == 0
            if heartbeat or last.get(device) != state:
                writer.writerow((ts, device, state))
                kept += 1
            last[device] = state
    return kept


def one_month_terms(out: Path) -> Path:
    """The example's terms cut to its first month (October 2026): the month the small evidence
    covers, and the only period due whatever today's date (the example runs three months)."""
    text = (EXAMPLE / "terms.yaml").read_text()
    term = 'term: {first_period: "2026-10", periods: 3}'
    assert term in text, "examples/acme-ev/terms.yaml: the term line changed"
    out.write_text(text.replace(term, 'term: {first_period: "2026-10", periods: 1}'))
    return out


def _mine_all(w3, hashes: list) -> list:
    """Mine blocks until every transaction in `hashes` has a receipt (automine is off)."""
    receipts: dict = {}
    while len(receipts) < len(hashes):
        w3.provider.make_request("evm_mine", [])
        for h in hashes:
            if h not in receipts:
                try:
                    receipts[h] = w3.eth.get_transaction_receipt(h)
                except Exception:  # noqa: BLE001 - not in a block yet
                    pass
    out = [receipts[h] for h in hashes]
    assert all(r["status"] == 1 for r in out), "a setup transaction failed"
    return out


def create_agreements(w3, n: int, oracles: list[str], terms_path: Path) -> list[str]:
    """n agreements on the example terms, each escrowed in a test token (setup: not timed). The
    transactions are sent with automine off and mined many to a block: with one block per
    transaction, Anvil's setup of 1,000 agreements takes minutes."""
    from web3.logs import DISCARD

    from oracle.chain.abi import contract
    from oracle.chain.config import config_from_terms
    from oracle.chain.tx import deploy, deploy_factory
    from oracle.core.terms import load_terms

    vendor, customer = w3.eth.accounts[0], w3.eth.accounts[1]
    token = deploy(w3, "TestToken", vendor, "Test USD Coin", "USDC", 6)
    factory = deploy_factory(w3, vendor)
    config = config_from_terms(load_terms(terms_path), customer=customer, asset=token.address,
                               oracles=oracles, threshold=2)
    escrow = config.max_credit_per_period() * config.period_count
    w3.eth.wait_for_transaction_receipt(token.functions.mint(vendor, escrow * n).transact({"from": vendor}))
    create = factory.get_function_by_signature("createAgreement(bytes)")(config.encoded())
    tx = {"from": vendor, "gas": create.estimate_gas({"from": vendor}) * 2}
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        created = factory.events.AgreementCreated()
        addresses = [created.process_receipt(r, errors=DISCARD)[0]["args"]["agreement"]
                     for r in _mine_all(w3, [create.transact(tx) for _ in range(n)])]
        accept = {"from": customer, "gas": 100_000}
        _mine_all(w3, [contract(w3, "Agreement", a).functions.accept().transact(accept) for a in addresses])
        _mine_all(w3, [token.functions.approve(a, escrow).transact(tx) for a in addresses])
        _mine_all(w3, [contract(w3, "Agreement", a).functions.deposit(escrow).transact(tx) for a in addresses])
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    return addresses


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _cpu_split(service, chain) -> dict[str, float]:
    workers = service.workers.pids()
    return {"oracle": _cpu_s(os.getpid()), "workers": sum(_cpu_s(p) for p in workers),
            "anvil": _cpu_s(chain.process.pid) + sum(_cpu_s(p) for p in _children(chain.process.pid))}


def _children(pid: int) -> list[int]:
    """Descendants of a process (the node may run under a wrapper)."""
    out, todo = [], [pid]
    procs = [d for d in os.listdir("/proc") if d.isdigit()] if os.path.isdir("/proc") else []
    parents: dict[int, int] = {}
    for d in procs:
        try:
            parents[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def bench_settlement(n: int, work: Path, block_time: int = 0) -> dict[str, float]:
    """`block_time` 0: Anvil's default automine (a block as soon as a transaction arrives); else
    a block every `block_time` seconds, as on a public chain, with the node ticking again every
    0.2 s until every report is confirmed."""
    from eth_account import Account
    from eth_utils import keccak

    from oracle.chain import devchain
    from oracle.chain.abi import contract
    from oracle.chain.keystore import KeyRing
    from oracle.node.loop import Service
    from oracle.node.settings import load_settings
    from oracle.node.states import ReportState

    keys = [keccak(text=f"slacomp bench oracle {i}") for i in range(3)]
    submitter = Account.from_key(keccak(text="slacomp bench submitter"))
    inbox = work / "inbox"
    events = small_evidence(inbox)
    terms_path = one_month_terms(work / "terms.yaml")
    with devchain.start("anvil") as chain:
        w3 = chain.w3()
        t0 = time.perf_counter()
        addresses = create_agreements(w3, n, [Account.from_key(k).address for k in keys], terms_path)
        setup_s = time.perf_counter() - t0
        w3.provider.make_request("anvil_setBalance", [submitter.address, hex(10**24)])
        lines = [f'rpc_url = "{chain.url}"', f'db_url = "sqlite:///{work / "oracle.db"}"',
                 f'data_dir = "{work / "data"}"', 'grace = "1h"', "confirmations = 1", 'listen = ""']
        for address in addresses:
            lines += ["", "[[agreements]]", f'address = "{address}"', f'terms = "{terms_path}"',
                      f'inbox = "{inbox}"']
        (work / "oracle.toml").write_text("\n".join(lines) + "\n")
        # keys in memory: the keystore KDF is a one-off at start-up, not part of the work per report
        service = Service(load_settings(work / "oracle.toml", env={}), keyring=KeyRing(
            [Account.from_key(k) for k in keys[:2]]), submitter=submitter)
        try:
            service.start_workers()  # likewise a one-off at start-up (`oracle run` starts them first)
            if block_time:
                w3.provider.make_request("evm_setIntervalMining", [block_time])
            cpu0 = _cpu_split(service, chain)
            block0 = w3.eth.block_number
            t0 = time.perf_counter()
            ticks = 0
            while ticks < (5 if not block_time else 5 + 100 * block_time):
                if ticks and block_time:
                    time.sleep(0.2)
                service.tick()
                ticks += 1
                states = [r["state"] for a in service.status() for r in a["reports"]]
                if states.count(ReportState.CONFIRMED) == n:
                    break
            seconds = time.perf_counter() - t0
            cpu = {k: v - cpu0[k] for k, v in _cpu_split(service, chain).items()}
            blocks = w3.eth.block_number - block0
            settled = states.count(ReportState.CONFIRMED)
            others = {st: states.count(st) for st in sorted(set(states)) if st != ReportState.CONFIRMED}
            errors = sorted({str(r["error"])[:120] for a in service.status() for r in a["reports"] if r["error"]})
            failed = {s.labels["kind"]: int(s.value) for m in service.metrics.failures.collect()
                      for s in m.samples if s.name.endswith("_total") and s.value}
            logs = sum(len(contract(w3, "Agreement", a)
                           .events.ReportAccepted().get_logs(from_block=0)) for a in addresses[:10])
        finally:
            service.close()
    assert logs == min(10, n), f"expected one settlement per agreement, saw {logs} for the first 10"
    return {"agreements": n, "settled": settled, "seconds": seconds, "ticks": ticks, "events_each": events,
            "blocks": blocks,
            "setup_s": setup_s, "cpu": cpu, "others": others, "errors": errors[:5], "failed": failed}


def bench_ingest(n_events: int, work: Path) -> dict[str, float]:
    from sqlalchemy import func, select

    from bench.simulate import sites_for
    from oracle.core.terms import load_terms
    from oracle.sim.simulate import SimParams, simulate
    from oracle.store import db
    from oracle.store.ingest import ingest_file

    sim = work / "sim"
    simulate(SimParams(sites=sites_for(n_events), devices_per_site=4, months=1, seed=1, bad_sites=2), sim)
    terms = load_terms(sim / "terms.yaml")
    engine = db.connect(f"sqlite:///{work / 'ingest.db'}")
    try:
        ingest_file(engine, terms, "bench", sim / "evidence" / "devices.csv")
        t0 = time.perf_counter()
        result = ingest_file(engine, terms, "bench", sim / "evidence" / "events.csv")
        seconds = time.perf_counter() - t0
        with engine.connect() as conn:  # not timed: every accepted row is in the table
            stored = conn.execute(select(func.count()).select_from(db.events)).scalar()
    finally:
        engine.dispose()
    assert result.quarantined == 0, result.to_dict()["problems"][:3]
    assert stored == result.accepted, (stored, result.accepted)
    return {"events": result.accepted, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--agreements", type=int)
    ap.add_argument("--events", type=int)
    ap.add_argument("--skip", choices=("settle", "ingest"))
    ap.add_argument("--block-time", type=int, default=0,
                    help="seconds between Anvil's blocks in the settlement run (0: automine, Anvil's default)")
    args = ap.parse_args()
    n = args.agreements or (100 if args.quick else 1_000)
    n_events = args.events or (1_000_000 if args.quick else 10_000_000)
    work = Path(tempfile.mkdtemp(prefix="slacomp-oracle-bench-"))
    try:
        if args.skip != "settle":
            s = bench_settlement(n, work / "settle", args.block_time)
            rate = s["settled"] / s["seconds"]
            mining = f"a block every {args.block_time} s" if args.block_time else "automine"
            print(f"settlement: {s['events_each']:,} events per agreement (identical evidence), Anvil {mining}, "
                  f"setup {s['setup_s']:.1f} s (not timed), {s['ticks']} tick(s)")
            print(f"{'agreements':>11} {'settled':>8} {'seconds':>8} {'agreements/s':>13}")
            print(f"{n:>11,} {int(s['settled']):>8,} {s['seconds']:>8.2f} {rate:>13.1f}   "
                  f"target >= {TARGET_AGREEMENTS_PER_S:.0f}: {'OK' if rate >= TARGET_AGREEMENTS_PER_S else 'SLOW'}")
            print("CPU seconds in the timed part: " + ", ".join(f"{k} {v:.1f}" for k, v in s["cpu"].items())
                  + f" (of {s['seconds'] * (os.cpu_count() or 1):.1f} core-seconds);"
                  + f" Anvil mined {s['blocks']:,} blocks")
            if s["others"] or s["failed"]:
                print(f"not settled: {s['others']}; failures: {s['failed']}; errors: {s['errors']}")
        if args.skip != "ingest":
            (work / "ingest").mkdir(parents=True, exist_ok=True)
            i = bench_ingest(n_events, work / "ingest")
            rate = i["events"] / i["seconds"]
            print(f"{'ingest events':>14} {'seconds':>8} {'events/s':>10}")
            print(f"{int(i['events']):>14,} {i['seconds']:>8.2f} {rate:>10,.0f}   "
                  f"target >= {TARGET_EVENTS_PER_S:,.0f}: {'OK' if rate >= TARGET_EVENTS_PER_S else 'SLOW'}")
    finally:
        if not os.environ.get("SLACOMP_BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
