"""The `slacomp` command line: a thin shell over the oracle package's functions.

Each subcommand is one `_cmd_<name>(args) -> int` function registered in `_build_parser`.
Errors a user can fix (terms, evidence, period) are printed without a traceback; exit code 2."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oracle.core.period import period_bounds, period_labels
from oracle.core.terms import TermsError, canonical_bytes, load_terms, terms_hash
from oracle.engine.kpi import PeriodError, PeriodResult, compute_period
from oracle.engine.memory import tune_allocator
from oracle.evidence.csv import parse_ts_text
from oracle.evidence.load import EvidenceError, load_evidence

EXIT_USER_ERROR = 2

if TYPE_CHECKING:
    from oracle.verify.customer import Verification


def _money(amount: int, decimals: int) -> str:
    if decimals == 0:
        return str(amount)
    whole, frac = divmod(amount, 10**decimals)
    return f"{whole}.{frac:0{decimals}d}"


def _print_table(result: PeriodResult, decimals: int, symbol: str) -> None:
    from rich.console import Console
    from rich.table import Table

    mtd = result.as_of is not None
    d = result.to_json_dict()
    title = f"{result.agreement} · {result.label} ({d['period']['start']} → {d['period']['end']})"
    if mtd:
        title += f" · as of {d['as_of']}"
    table = Table(title=title)
    for col in ("objective", "kpi", "subject", "good", "counted", "attainment", "target", "met", f"credit ({symbol})"):
        table.add_column(col, justify="right" if col in ("good", "counted", "attainment", "target") else "left")
    if mtd:
        table.add_column("budget left", justify="right")
        table.add_column("burn", justify="right")
    for o in result.objectives:
        for r in o.results:
            row = [o.id, o.kpi, r.subject, str(r.good_s), str(r.counted_s), f"{r.attainment_bps / 100:.2f}%",
                   f"{o.target_bps / 100:.2f}%", "[green]yes[/]" if r.met else "[red]no[/]", _money(r.credit, decimals)]
            if mtd:
                row += [str(r.budget_s), "-" if r.burn_rate is None else f"{r.burn_rate:.2f}"]
            table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(f"total credit: {_money(result.total_credit, decimals)} {symbol}")
    console.print(f"terms_hash:    {result.terms_hash}\nevidence_root: {result.evidence_root}")


def _cmd_kpi(args: argparse.Namespace) -> int:
    terms = load_terms(args.terms)
    as_of = None
    if args.as_of is not None:
        as_of = parse_ts_text(args.as_of)
        if as_of is None:
            raise PeriodError("--as-of", f"{args.as_of!r} is not an ISO-8601 instant with offset")
    evidence = load_evidence(args.evidence, terms)
    result = compute_period(terms, evidence, args.period, as_of=as_of)
    if args.format == "json":
        print(json.dumps(result.to_json_dict(), indent=2))
    else:
        _print_table(result, terms.decimals, terms.currency_symbol)
    return 0


def _cmd_compliance(args: argparse.Namespace) -> int:
    from oracle.engine.compliance import compliance_report

    terms = load_terms(args.terms)
    report = compliance_report(terms, load_evidence(args.evidence, terms), args.year)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"compliance-{terms.agreement}-{args.year}"
        (out / f"{stem}.md").write_text(report.to_markdown(), encoding="utf-8")
        (out / f"{stem}.json").write_text(report.to_json(), encoding="utf-8")
        print(f"wrote {out / stem}.md and .json")
    else:
        print(report.to_json() if args.format == "json" else report.to_markdown(), end="")
    return 0


def _cmd_terms(args: argparse.Namespace) -> int:
    terms = load_terms(args.terms)
    if args.canonical:
        sys.stdout.buffer.write(canonical_bytes(terms) + b"\n")
        return 0
    periods = [{"label": p, "start": s, "end": e} for p in period_labels(terms) for s, e in [period_bounds(terms, p)]]
    print(json.dumps({"agreement": terms.agreement, "terms_hash": terms_hash(terms), "periods": periods}, indent=2))
    return 0


def _print_verification(v: Verification, decimals: int, symbol: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"agreement {v.agreement} on chain {v.chain_id}")
    for c in v.checks:
        console.print(f"  {'[green]✓[/]' if c.ok else '[red]✗[/]'} {c.name} [dim]{c.detail}[/]")
    table = Table(title="settled periods")
    for col in ("period", "attainments (bps)", "signers", f"expected ({symbol})", f"credit ({symbol})",
                "paid", "claimable", "debt", "status"):
        table.add_column(col)
    for p in v.periods:
        table.add_row(f"{p.period} {p.label}", " | ".join(",".join(map(str, row)) for row in p.attainments),
                      str(len(p.signers)), _money(p.expected_credit, decimals), _money(p.credit, decimals),
                      _money(p.paid, decimals), _money(p.deferred, decimals), _money(p.debt, decimals),
                      "[green]✓[/]" if p.ok else "[red]✗ " + "; ".join(p.problems) + "[/]")
    console.print(table)
    console.print("[green]verified[/]" if v.ok else f"[red]FAILED[/]: {v.first_problem()}")


def _cmd_verify(args: argparse.Namespace) -> int:
    from web3 import Web3

    from oracle.verify.customer import verify_agreement

    terms = load_terms(args.terms)
    oracles = [a for a in args.oracles.split(",") if a] if args.oracles else None
    v = verify_agreement(Web3(Web3.HTTPProvider(args.rpc)), args.agreement, terms, factory=args.factory,
                         oracles=oracles, threshold=args.threshold)
    if args.format == "json":
        print(json.dumps(v.to_json_dict(), indent=2))
    else:
        _print_verification(v, terms.decimals, terms.currency_symbol)
    return 0 if v.ok else 1


def _cmd_audit(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from web3 import Web3

    from oracle.chain.abi import contract
    from oracle.evidence.bundle import find_bundle
    from oracle.verify.audit import audit_agreement, prove_device, terms_from_store, verify_inclusion, write_report

    w3 = Web3(Web3.HTTPProvider(args.rpc))
    agreement = contract(w3, "Agreement", args.agreement)
    onchain_terms = "0x" + bytes(agreement.functions.termsHash().call()).hex()
    terms = load_terms(args.terms) if args.terms else terms_from_store(args.evidence_store, onchain_terms)
    audit = audit_agreement(w3, args.agreement, terms, args.evidence_store)
    if args.prove:
        period = next((p for p in audit.periods if p.label == args.period), None)
        if period is None:
            raise PeriodError("--period", f"{args.period!r} is not a settled period of this agreement")
        proof = prove_device(find_bundle(args.evidence_store, period.evidence_root), args.prove)
        ok = verify_inclusion(proof, period.evidence_root)
        print(json.dumps(asdict(proof) | {"onchain_evidence_root": period.evidence_root, "verified": ok}, indent=2))
        return 0 if ok else 1
    if args.out:
        md, js = write_report(audit, args.out)
        print(f"audit report: {md} and {js}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(audit.to_json_dict(), indent=2, sort_keys=True))
    else:
        print(audit.to_markdown())
    return 0 if audit.ok else 1


def _cmd_agreement(args: argparse.Namespace) -> int:
    from web3 import Web3

    from oracle.chain.abi import contract
    from oracle.chain.config import ZERO_ADDRESS, config_from_terms
    from oracle.chain.tx import create_agreement, deploy_factory, deposit

    w3 = Web3(Web3.HTTPProvider(args.rpc))
    sender = Web3.to_checksum_address(args.sender) if args.sender else w3.eth.accounts[0]
    if args.agreement_command == "factory":
        print(deploy_factory(w3, sender).address)
    elif args.agreement_command == "create":
        config = config_from_terms(
            load_terms(args.terms), customer=args.customer,
            asset=ZERO_ADDRESS if args.asset.lower() == "eth" else args.asset,
            oracles=[a for a in args.oracles.split(",") if a], threshold=args.threshold)
        agreement, receipt = create_agreement(w3, contract(w3, "AgreementFactory", args.factory), sender, config)
        print(agreement.address)
        print(f"created in tx {receipt['transactionHash'].hex()} (gas {receipt['gasUsed']:,}); reserve per "
              f"period {config.max_credit_per_period()}; {config.period_count} periods", file=sys.stderr)
    elif args.agreement_command == "accept":
        from oracle.chain.settle import accept

        agreement = contract(w3, "Agreement", args.agreement)
        customer = Web3.to_checksum_address(args.sender) if args.sender else agreement.functions.customer().call()
        receipt = accept(w3, agreement, customer)
        print(f"accepted by {customer} in tx {receipt['transactionHash'].hex()}")
    else:  # deposit
        agreement = contract(w3, "Agreement", args.agreement)
        deposit(w3, agreement, sender, args.amount)
        f = agreement.functions
        print(json.dumps({"escrow": f.escrowBalance().call(), "reserve": f.reserve().call(),
                          "withdrawable": f.withdrawable().call(), "debt": f.debt().call()}))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from slacomp.demo import run_demo

    kw: dict[str, Any] = {"data": Path(args.data)} if args.data else {}
    result = run_demo(rpc=args.rpc, serve=not args.no_serve, host=args.host, port=args.port, **kw)
    return 0 if result.ok else 1


def _cmd_oracle(args: argparse.Namespace) -> int:
    from slacomp.node_cmd import run

    return run(args)


def _cmd_status(args: argparse.Namespace) -> int:
    from slacomp.forecast_cmd import cmd_status

    return cmd_status(args)


def _cmd_forecast(args: argparse.Namespace) -> int:
    from slacomp.forecast_cmd import cmd_forecast

    return cmd_forecast(args)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from oracle.sim.simulate import SimError, SimParams, simulate

    try:
        params = SimParams(
            sites=args.sites, devices_per_site=args.devices_per_site, months=args.months, start=args.start,
            seed=args.seed, profile=args.profile, timezone=args.timezone, failure_rate=args.failure_rate,
            mttr_weekday_h=args.mttr_weekday, mttr_weekend_h=args.mttr_weekend, dropout_rate=args.dropout_rate,
            dropout_mean_min=args.dropout_mean, heartbeat_s=args.heartbeat,
            maintenance_per_site_month=args.maintenance_rate, churn=args.churn, growth=args.growth,
            bad_sites=args.bad_sites, bad_outage_days=(args.bad_outage_days[0], args.bad_outage_days[1]))
        summary = simulate(params, args.out)
    except SimError as exc:
        print(f"slacomp: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(json.dumps(summary.to_json_dict(), indent=2))
    return 0


def _cmd_api(args: argparse.Namespace) -> int:
    """Serve the API and dashboard with uvicorn (settings from SLACOMP_* env, see api/settings.py)."""
    from pathlib import Path

    from api.auth import KeysError, add_key

    if args.new_key:
        role, _, party = args.new_key.partition(":")
        keys_file = Path(args.keys_file or os.environ.get("SLACOMP_API_KEYS_FILE", "api-keys.json"))
        try:
            token = add_key(keys_file, role, party or None, args.key_id or f"{role}-{len(token_ids(keys_file))}")
        except KeysError as exc:
            print(f"slacomp: {exc}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(token)  # shown once; only its hash is stored in the keys file
        return 0
    import uvicorn

    if args.keys_file:
        os.environ["SLACOMP_API_KEYS_FILE"] = args.keys_file
    if args.rpc:
        os.environ["SLACOMP_API_RPC_URL"] = args.rpc
    uvicorn.run("api.app:app_from_env", factory=True, host=args.host, port=args.port, workers=args.workers,
                log_level=args.log_level)
    return 0


def token_ids(keys_file: "Path") -> list[str]:  # noqa: F821 - Path imported lazily above
    import yaml

    data = yaml.safe_load(keys_file.read_text()) if keys_file.exists() else None
    return [k.get("id") for k in (data or {}).get("keys", [])]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slacomp", description="SLA compensation for connected-device estates.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("kpi", help="compute KPIs, attainments and credits of one period")
    p.add_argument("terms", help="terms file (YAML, schema slacomp/v1)")
    p.add_argument("--evidence", required=True, help="evidence folder (devices.csv, events.csv, ...)")
    p.add_argument("--period", required=True, help="calendar month YYYY-MM")
    p.add_argument("--format", choices=("json", "table"), default="json")
    p.add_argument("--as-of", dest="as_of", help="month-to-date: ISO-8601 instant with offset")
    p.set_defaults(handler=_cmd_kpi)

    p = sub.add_parser("compliance", help="regulator-facing report of a calendar year: NEVI port uptime, PCPR "
                                          "network reliability, excluded outages")
    p.add_argument("terms", help="terms file (YAML, schema slacomp/v1)")
    p.add_argument("--evidence", required=True, help="evidence folder (devices.csv, events.csv, ...)")
    p.add_argument("--year", required=True, type=int, help="calendar year, e.g. 2026")
    p.add_argument("--out", help="write compliance-<agreement>-<year>.md and .json to this folder")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown", help="without --out")
    p.set_defaults(handler=_cmd_compliance)

    p = sub.add_parser("terms", help="validate terms; print terms_hash and period bounds")
    p.add_argument("terms", help="terms file (YAML, schema slacomp/v1)")
    p.add_argument("--canonical", action="store_true", help="print the canonical bytes that are hashed")
    p.set_defaults(handler=_cmd_terms)

    p = sub.add_parser("verify", help="customer: verify every payout of an agreement from the chain and your terms")
    p.add_argument("agreement", help="the agreement's address")
    p.add_argument("--terms", required=True, help="your copy of the terms file")
    p.add_argument("--rpc", default="http://127.0.0.1:8545", help="JSON-RPC URL (default %(default)s)")
    p.add_argument("--factory", help="the factory you expect created the agreement")
    p.add_argument("--oracles", help="comma-separated addresses of the agreed oracles")
    p.add_argument("--threshold", type=int, help="agreed number of signatures")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(handler=_cmd_verify)

    p = sub.add_parser("audit", help="auditor: replay every settled period from the evidence store")
    p.add_argument("agreement", help="the agreement's address")
    p.add_argument("--evidence-store", required=True, help="folder of evidence bundles (the oracle's store)")
    p.add_argument("--rpc", default="http://127.0.0.1:8545", help="JSON-RPC URL (default %(default)s)")
    p.add_argument("--terms", help="terms file (default: the bundles' terms whose hash is on-chain)")
    p.add_argument("--out", help="write audit.md and audit.json to this folder")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown")
    p.add_argument("--prove", metavar="DEVICE", help="print an inclusion proof of DEVICE's evidence")
    p.add_argument("--period", help="period label for --prove (YYYY-MM)")
    p.set_defaults(handler=_cmd_audit)

    p = sub.add_parser("agreement", help="vendor: deploy the factory, create an agreement from terms, fund escrow")
    asub = p.add_subparsers(dest="agreement_command", required=True)
    for name, help_ in (("factory", "deploy the AgreementFactory; prints its address"),
                        ("create", "create an agreement from a terms file; prints its address"),
                        ("deposit", "deposit into an agreement's escrow (approves ERC-20 first)"),
                        ("accept", "customer: accept an agreement (no period settles before)")):
        q = asub.add_parser(name, help=help_)
        q.add_argument("--rpc", default="http://127.0.0.1:8545", help="JSON-RPC URL (default %(default)s)")
        q.add_argument("--from", dest="sender", help="an unlocked account on the node (default: its first; "
                       "for accept, the agreement's customer)")
        if name == "create":
            q.add_argument("--factory", required=True, help="the AgreementFactory's address")
            q.add_argument("--terms", required=True, help="terms file (schema slacomp/v1)")
            q.add_argument("--customer", required=True, help="the customer's address")
            q.add_argument("--asset", required=True, help="`eth` or an ERC-20 address")
            q.add_argument("--oracles", required=True, help="comma-separated oracle addresses")
            q.add_argument("--threshold", type=int, required=True, help="signatures needed (M of N)")
        if name in ("deposit", "accept"):
            q.add_argument("agreement", help="the agreement's address")
        if name == "deposit":
            q.add_argument("amount", type=int, help="amount in the asset's smallest unit")
    p.set_defaults(handler=_cmd_agreement)

    p = sub.add_parser("demo", help="the whole story: three agreements, a simulated month settled, verified, "
                                    "audited, and the dashboard")
    p.add_argument("--rpc", help="JSON-RPC URL with unlocked dev accounts (default: an embedded Anvil)")
    p.add_argument("--data", help="data folder (default var/demo): chain state, oracle database, bundles")
    p.add_argument("--no-serve", action="store_true", help="end after the summary instead of serving the dashboard")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(handler=_cmd_demo)

    from slacomp.node_cmd import add_arguments as add_oracle_arguments

    p = sub.add_parser("oracle", help="the oracle node: ingest, close, run, status, keystore")
    add_oracle_arguments(p)
    p.set_defaults(handler=_cmd_oracle)

    from slacomp.forecast_cmd import add_forecast_arguments, add_status_arguments

    p = sub.add_parser("status", help="month-to-date error budgets: total, used, left, burn rate")
    add_status_arguments(p)
    p.set_defaults(handler=_cmd_status)

    p = sub.add_parser("forecast", help="P(meet target) per subject, open faults by credit saved, alerts")
    add_forecast_arguments(p)
    p.set_defaults(handler=_cmd_forecast)

    p = sub.add_parser("simulate", help="generate a seeded estate: terms.yaml, evidence/*.csv, truth.json")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--sites", type=int, default=10)
    p.add_argument("--devices-per-site", dest="devices_per_site", type=int, default=4)
    p.add_argument("--months", type=int, default=1, help="periods of the term")
    p.add_argument("--start", default="2026-10", help="first period YYYY-MM")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--profile", choices=("ev_charger", "ticket_barrier", "smart_meter"), default="ev_charger")
    p.add_argument("--timezone", default="Europe/London", help="the agreement's zone")
    p.add_argument("--failure-rate", dest="failure_rate", type=float, help="faults per device-hour")
    p.add_argument("--mttr-weekday", dest="mttr_weekday", type=float, help="mean hours to repair (working days)")
    p.add_argument("--mttr-weekend", dest="mttr_weekend", type=float, help="... (weekends and holidays)")
    p.add_argument("--dropout-rate", dest="dropout_rate", type=float, help="drop-outs per device-hour")
    p.add_argument("--dropout-mean", dest="dropout_mean", type=float, help="mean drop-out minutes")
    p.add_argument("--heartbeat", type=int, help="seconds between heartbeats")
    p.add_argument("--maintenance-rate", dest="maintenance_rate", type=float, default=0.5,
                   help="planned maintenance windows per site and month")
    p.add_argument("--churn", type=float, default=0.03, help="share of devices retired and replaced per month")
    p.add_argument("--growth", type=float, default=0.02, help="share of new devices deployed per month")
    p.add_argument("--bad-sites", dest="bad_sites", type=int, default=0,
                   help="sites with a multi-day outage every month")
    p.add_argument("--bad-outage-days", dest="bad_outage_days", type=float, nargs=2, default=(4.0, 8.0),
                   metavar=("MIN", "MAX"))
    p.set_defaults(handler=_cmd_simulate)

    p = sub.add_parser("api", help="serve the API and dashboard (uvicorn); settings from SLACOMP_* env")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-level", dest="log_level", default="info")
    p.add_argument("--rpc", help="JSON-RPC URL (default: $SLACOMP_RPC_URL or http://127.0.0.1:8545)")
    p.add_argument("--keys-file", dest="keys_file", help="API keys file (default: $SLACOMP_API_KEYS_FILE)")
    p.add_argument("--new-key", dest="new_key", metavar="ROLE[:ADDRESS]",
                   help="create a key (vendor|customer|auditor), store its hash in the keys file, print it, exit")
    p.add_argument("--key-id", dest="key_id", help="name of the new key")
    p.set_defaults(handler=_cmd_api)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    tune_allocator()  # big-array work reuses freed memory instead of faulting in fresh pages
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except EvidenceError as exc:
        print(f"slacomp: invalid evidence:\n{exc}", file=sys.stderr)
    except TermsError as exc:
        print(f"slacomp: invalid terms: {exc}", file=sys.stderr)
    except PeriodError as exc:
        print(f"slacomp: {exc}", file=sys.stderr)
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except Exception as exc:  # noqa: BLE001 - user-facing errors of the chain and the evidence store
        from requests.exceptions import ConnectionError as RPCConnectionError

        from oracle.chain.abi import ArtifactError
        from oracle.chain.tx import ChainError
        from oracle.evidence.bundle import BundleError
        from oracle.store.db import SchemaError

        if isinstance(exc, RPCConnectionError):
            print(f"slacomp: cannot reach the chain node: {exc.request.url if exc.request else exc}", file=sys.stderr)
        elif isinstance(exc, (BundleError, ChainError, ArtifactError, SchemaError)):
            print(f"slacomp: {exc}", file=sys.stderr)
        else:
            raise
    return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
