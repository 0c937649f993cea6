"""The end-to-end demo behind `slacomp demo` (and `make demo`): a real chain, the factory, one
agreement from a terms file escrowed in a USDC-like token, a month of evidence measured by the KPI
engine, a 2-of-3 oracle report signed and submitted, and the credit paid on-chain.

Until the simulator and service land, the evidence is the example folder's October 2026."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_utils import keccak
from rich.console import Console
from rich.table import Table
from web3 import Web3

from . import devchain
from .chain import PROJECT_ROOT, agreement_events, create_agreement, deploy, deploy_factory, deposit, \
    submit_report, transact
from .evidence import load_evidence
from .kpi import compute_period
from .report import report_from_result
from .schedule import config_from_terms
from .signing import sign_for
from .terms import load_terms, period_labels

EXAMPLE = PROJECT_ROOT / "examples" / "acme-ev"
# Demo-only oracle keys (public, deterministic): never use them for real agreements.
DEMO_ORACLE_KEYS = [keccak(text=f"slacomp demo oracle {i}") for i in range(3)]


@dataclass
class DemoResult:
    agreement: str
    period: str
    engine_credit: int
    paid: int
    customer_received: int
    tx_hash: str


def _money(amount: int, decimals: int) -> str:
    whole, frac = divmod(amount, 10**decimals)
    return f"{whole:,}.{frac:0{decimals}d}"


def run_demo(rpc: str | None = None, terms_path: Path = EXAMPLE / "terms.yaml",
             evidence_dir: Path = EXAMPLE / "evidence", period: str | None = None,
             console: Console | None = None) -> DemoResult:
    console = console or Console()
    chain = None if rpc else devchain.start("anvil")
    try:
        w3 = Web3(Web3.HTTPProvider(rpc)) if rpc else chain.w3()
        return _run(w3, terms_path, evidence_dir, period, console)
    finally:
        if chain:
            chain.stop()


def _run(w3: Web3, terms_path: Path, evidence_dir: Path, period: str | None, console: Console) -> DemoResult:
    vendor, customer, relayer = w3.eth.accounts[:3]
    terms = load_terms(terms_path)
    label = period or period_labels(terms)[0]
    index = period_labels(terms).index(label)
    oracles = [Account.from_key(k).address for k in DEMO_ORACLE_KEYS]

    console.rule(f"[bold]slacomp demo[/] · chain {w3.eth.chain_id} · {terms.agreement}")
    factory = deploy_factory(w3, vendor)
    token = deploy(w3, "TestToken", vendor, "Test USD Coin", terms.currency_symbol, terms.decimals)
    console.print(f"factory  {factory.address}\ntoken    {token.address} ({terms.currency_symbol}, "
                  f"{terms.decimals} decimals)")

    config = config_from_terms(terms, customer=customer, asset=token.address, oracles=oracles, threshold=2)
    agreement, receipt = create_agreement(w3, factory, vendor, config)
    console.print(f"agreement {agreement.address} for customer {customer} "
                  f"(gas {receipt['gasUsed']:,}; oracles 2 of {len(oracles)})")
    escrow = config.max_credit_per_period() * config.period_count
    transact(w3, token.functions.mint(vendor, escrow), vendor, "mint")
    deposit(w3, agreement, vendor, escrow)
    console.print(f"escrow   {_money(escrow, terms.decimals)} {terms.currency_symbol} deposited; "
                  f"reserve {_money(agreement.functions.reserve().call(), terms.decimals)}")

    console.rule(f"measuring {label} from {evidence_dir}")
    result = compute_period(terms, load_evidence(evidence_dir, terms), label)
    table = Table()
    for col in ("objective", "subject", "attainment", "target", "met", f"credit ({terms.currency_symbol})"):
        table.add_column(col)
    for o in result.objectives:
        for r in o.results:
            table.add_row(o.id, r.subject, f"{r.attainment_bps / 100:.2f}%", f"{o.target_bps / 100:.2f}%",
                          "yes" if r.met else "[red]no[/]", _money(r.credit, terms.decimals))
    console.print(table)

    end = config.period_bounds[index + 1]
    if w3.eth.get_block("latest")["timestamp"] <= end:  # a dev chain behind the period's end
        w3.provider.make_request("evm_mine", [end + 1])
    report = report_from_result(result, index)
    signatures = sign_for(report, config, w3.eth.chain_id, agreement.address, DEMO_ORACLE_KEYS[:2])
    before = token.functions.balanceOf(customer).call()
    receipt = submit_report(w3, agreement, config, report, signatures, relayer)
    received = token.functions.balanceOf(customer).call() - before
    events = agreement_events(agreement, receipt)
    paid = sum(args["amount"] for name, args in events if name == "CreditPaid")
    console.rule("settled on-chain")
    for name, args in events:
        shown = {k: ("0x" + v.hex() if isinstance(v, bytes) else v) for k, v in args.items()
                 if k not in ("attainments", "signatures")}
        console.print(f"  {name} {shown}")
    console.print(f"tx {receipt['transactionHash'].hex()} · gas {receipt['gasUsed']:,}")
    ok = paid == result.total_credit == received
    console.print(f"engine credit {_money(result.total_credit, terms.decimals)} · paid "
                  f"{_money(paid, terms.decimals)} · customer received {_money(received, terms.decimals)} "
                  f"{terms.currency_symbol} · {'[green]match[/]' if ok else '[red]MISMATCH[/]'}")
    return DemoResult(agreement.address, label, result.total_credit, paid, received,
                      "0x" + receipt["transactionHash"].hex().removeprefix("0x"))


__all__ = ["run_demo", "DemoResult"]
