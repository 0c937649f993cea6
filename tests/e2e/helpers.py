"""Shared set-up for the end-to-end tests: the example agreement (examples/acme-ev) settled for
October 2026 through the same functions the oracle uses."""
from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from web3 import Web3

from oracle.chain.abi import PROJECT_ROOT
from oracle.chain.config import config_from_terms
from oracle.chain.report import report_from_result
from oracle.chain.signing import sign_for
from oracle.chain.tx import agreement_events, create_agreement, deploy, deploy_factory, deposit, submit_report, transact
from oracle.core.terms import load_terms
from oracle.engine.kpi import compute_period
from oracle.evidence.load import load_evidence
from slacomp.demo import DEMO_ORACLE_KEYS

EXAMPLE = PROJECT_ROOT / "examples" / "acme-ev"
ORACLES = [Account.from_key(k).address for k in DEMO_ORACLE_KEYS]


@dataclass
class Settled:
    agreement: str
    engine_credit: int
    paid: int
    customer_received: int


def settle_example(w3: Web3) -> Settled:
    """Factory, USDC-like token, the example agreement (2 of 3 oracles), escrow, October measured,
    signed and submitted; returns what the engine said and what the customer got."""
    vendor, customer, relayer = w3.eth.accounts[:3]
    terms = load_terms(EXAMPLE / "terms.yaml")
    token = deploy(w3, "TestToken", vendor, "Test USD Coin", "USDC", 6)
    config = config_from_terms(terms, customer=customer, asset=token.address, oracles=ORACLES, threshold=2)
    agreement, _ = create_agreement(w3, deploy_factory(w3, vendor), vendor, config, customer=customer)
    escrow = config.max_credit_per_period() * config.period_count
    transact(w3, token.functions.mint(vendor, escrow), vendor, "mint")
    deposit(w3, agreement, vendor, escrow)
    result = compute_period(terms, load_evidence(EXAMPLE / "evidence", terms), "2026-10")
    if w3.eth.get_block("latest")["timestamp"] <= config.period_bounds[1]:
        w3.provider.make_request("evm_mine", [config.period_bounds[1] + 1])
    report = report_from_result(result, 0)
    before = token.functions.balanceOf(customer).call()
    receipt = submit_report(w3, agreement, config, report,
                            sign_for(report, config, w3.eth.chain_id, agreement.address, DEMO_ORACLE_KEYS[:2]),
                            relayer)
    paid = sum(args["amount"] for name, args in agreement_events(agreement, receipt) if name == "CreditPaid")
    return Settled(agreement.address, result.total_credit, paid,
                   token.functions.balanceOf(customer).call() - before)


def rewrite_bundle(path: Path, edits: dict[str, Callable[[bytes], bytes]]) -> dict[str, bytes]:
    """What a tamperer does to a bundle file: members rewritten (a proper zip again, checksums
    and all) through `edits` by member name. Returns every member's new bytes."""
    with zipfile.ZipFile(path) as z:
        members = [(info, z.read(info.filename)) for info in z.infolist()]
    out, buf = {}, io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for info, data in members:
            out[info.filename] = edits[info.filename](data) if info.filename in edits else data
            z.writestr(info, out[info.filename])
    path.write_bytes(buf.getvalue())
    return out
