"""Gas table for the agreement, measured on a real chain (Anvil by default).

    .venv/bin/python bench/gas.py [--rpc URL]

Targets (issue 2): report + payout, 1 site, 1 oracle, warm storage <= 75,000; each extra site
<= 3,000; each extra oracle signature <= 8,000; createAgreement (10 sites, 3 objectives,
3 oracles) <= 300,000.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_account import Account  # noqa: E402
from eth_utils import keccak  # noqa: E402
from web3 import Web3  # noqa: E402
from web3.logs import DISCARD  # noqa: E402

from oracle.chain import devchain  # noqa: E402
from oracle.chain.abi import contract  # noqa: E402
from oracle.chain.config import ZERO_ADDRESS, Config, ObjectiveSchedule  # noqa: E402
from oracle.chain.report import make_report  # noqa: E402
from oracle.chain.signing import sign_for  # noqa: E402
from oracle.chain.tx import deploy  # noqa: E402

DAY = 86_400
TERMS = keccak(text="terms")
KEYS = [keccak(text=f"bench oracle {i}") for i in range(5)]
OBJECTIVES = (
    ObjectiveSchedule(1, 0, ((9000, 10_000),)),            # site availability, per site
    ObjectiveSchedule(1, 0, ((9500, 2_500),)),             # site max-down, per site
    ObjectiveSchedule(0, 0, ((9900, 1_000), (9500, 3_000))),  # device uptime, estate
)


def _wait(w3: Web3, tx_hash) -> dict:
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1:
        raise RuntimeError(f"tx {tx_hash.hex()} reverted")
    return receipt


class Bench:
    def __init__(self, w3: Web3):
        self.w3 = w3
        self.vendor, self.customer, self.relayer = w3.eth.accounts[:3]
        self.factory = deploy(w3, "AgreementFactory", self.vendor)

    def config(self, sites: int, oracles: int, threshold: int, periods: int = 12) -> Config:
        start = self.w3.eth.get_block("latest")["timestamp"] + 10
        bounds = tuple(start + i * 30 * DAY for i in range(periods + 1))
        addrs = tuple(Account.from_key(k).address for k in KEYS[:oracles])
        return Config(self.customer, ZERO_ADDRESS, TERMS, 5_000 * 10**6, 10_000, tuple([1_000 * 10**6] * sites),
                      OBJECTIVES, bounds, addrs, threshold)

    def create(self, cfg: Config):
        tx = self.factory.get_function_by_signature("createAgreement(bytes)")(cfg.encoded())
        receipt = _wait(self.w3, tx.transact({"from": self.vendor}))
        event = self.factory.events.AgreementCreated().process_receipt(receipt, errors=DISCARD)[0]
        agreement = contract(self.w3, "Agreement", event["args"]["agreement"])
        _wait(self.w3, agreement.functions.accept().transact({"from": self.customer}))
        return agreement, receipt["gasUsed"]

    def report(self, agreement, cfg: Config, period: int, signers: int) -> int:
        end = cfg.period_bounds[period + 1]
        if self.w3.eth.get_block("latest")["timestamp"] <= end:
            self.w3.provider.make_request("evm_mine", [end + 1])
        # one site misses availability: a credit is due and paid
        att = [[8_000] + [10_000] * (len(cfg.site_fees) - 1), [10_000] * len(cfg.site_fees), [10_000]]
        report = make_report(period, TERMS, keccak(text=f"evidence {period}"), att)
        sigs = sign_for(report, cfg, self.w3.eth.chain_id, agreement.address, KEYS[:signers])
        tx = agreement.functions.submitReport(cfg.encoded(), period, report.terms_hash, report.evidence_root,
                                              report.packed_attainments, sigs)
        receipt = _wait(self.w3, tx.transact({"from": self.relayer}))
        return receipt["gasUsed"]

    def warm_report(self, sites: int, oracles: int, signers: int) -> int:
        """Gas of the second report (period 1) of an agreement: storage already written."""
        cfg = self.config(sites, oracles, signers)
        agreement, _ = self.create(cfg)
        _wait(self.w3, agreement.functions.deposit(10**12).transact({"from": self.vendor, "value": 10**12}))
        self.report(agreement, cfg, 0, signers)
        return self.report(agreement, cfg, 1, signers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rpc", help="JSON-RPC URL of a dev chain with unlocked accounts (default: start Anvil)")
    args = parser.parse_args()
    chain = None if args.rpc else devchain.start("anvil")
    w3 = Web3(Web3.HTTPProvider(args.rpc)) if args.rpc else chain.w3()
    try:
        b = Bench(w3)
        rows = []
        base = b.warm_report(1, 1, 1)
        rows.append(("report + payout, 1 site, 1 oracle (warm)", base, "<= 75,000", base <= 75_000))
        g10 = b.warm_report(10, 1, 1)
        g100 = b.warm_report(100, 1, 1)
        per_site = (g100 - base) / 99
        rows.append(("report, 10 sites, 1 oracle", g10, "", None))
        rows.append(("report, 100 sites, 1 oracle", g100, "", None))
        rows.append(("  each extra site", round(per_site), "<= 3,000", per_site <= 3_000))
        g3 = b.warm_report(1, 5, 3)
        g5 = b.warm_report(1, 5, 5)
        g1of5 = b.warm_report(1, 5, 1)
        per_sig = (g5 - g1of5) / 4
        rows.append(("report, 1 site, 1 of 5 signatures", g1of5, "", None))
        rows.append(("report, 1 site, 3 of 5 signatures", g3, "", None))
        rows.append(("report, 1 site, 5 of 5 signatures", g5, "", None))
        rows.append(("  each extra signature", round(per_sig), "<= 8,000", per_sig <= 8_000))
        _, create_gas = b.create(b.config(10, 3, 2))
        rows.append(("createAgreement: 10 sites, 3 objectives, 3 oracles", create_gas, "<= 300,000",
                     create_gas <= 300_000))
        width = max(len(r[0]) for r in rows)
        print(f"{'measurement':<{width}} | {'gas':>9} | {'target':>10} | ok")
        print(f"{'-' * width}-|-{'-' * 9}-|-{'-' * 10}-|---")
        for name, gas, target, ok in rows:
            mark = "" if ok is None else ("yes" if ok else "NO")
            print(f"{name:<{width}} | {gas:>9,} | {target:>10} | {mark}")
        return 0 if all(ok is not False for *_, ok in rows) else 1
    finally:
        if chain:
            chain.stop()


if __name__ == "__main__":
    raise SystemExit(main())
