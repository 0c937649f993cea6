"""The `slacomp` command line: a thin shell over the oracle package's functions.

Each subcommand is one `_cmd_<name>(args) -> int` function registered in `_build_parser`.
Errors a user can fix (terms, evidence, period) are printed without a traceback; exit code 2."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from oracle.csvraw import parse_ts_text
from oracle.evidence import EvidenceError, load_evidence
from oracle.kpi import PeriodError, PeriodResult, compute_period
from oracle.terms import TermsError, canonical_bytes, load_terms, period_bounds, period_labels, terms_hash

EXIT_USER_ERROR = 2


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


def _cmd_terms(args: argparse.Namespace) -> int:
    terms = load_terms(args.terms)
    if args.canonical:
        sys.stdout.buffer.write(canonical_bytes(terms) + b"\n")
        return 0
    periods = [{"label": p, "start": s, "end": e} for p in period_labels(terms) for s, e in [period_bounds(terms, p)]]
    print(json.dumps({"agreement": terms.agreement, "terms_hash": terms_hash(terms), "periods": periods}, indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from oracle.demo import run_demo

    result = run_demo(rpc=args.rpc)
    return 0 if result.paid == result.engine_credit == result.customer_received else 1


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

    p = sub.add_parser("terms", help="validate terms; print terms_hash and period bounds")
    p.add_argument("terms", help="terms file (YAML, schema slacomp/v1)")
    p.add_argument("--canonical", action="store_true", help="print the canonical bytes that are hashed")
    p.set_defaults(handler=_cmd_terms)

    p = sub.add_parser("demo", help="deploy, fund, measure, sign, submit and pay one agreement end to end")
    p.add_argument("--rpc", help="JSON-RPC URL with unlocked dev accounts (default: start Anvil)")
    p.add_argument("--no-serve", action="store_true", help="end after the summary (no API server yet)")
    p.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except EvidenceError as exc:
        print(f"slacomp: invalid evidence:\n{exc}", file=sys.stderr)
    except TermsError as exc:
        print(f"slacomp: invalid terms: {exc}", file=sys.stderr)
    except PeriodError as exc:
        print(f"slacomp: {exc}", file=sys.stderr)
    return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
