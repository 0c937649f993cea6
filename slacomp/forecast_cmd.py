"""`slacomp status` and `slacomp forecast`: error budgets, the period's forecast, the open
faults worth fixing first, and alerts — thin shells over oracle.engine.budget, oracle.engine.forecast and
oracle.engine.alerts, registered by slacomp.cli."""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date

from oracle.core.period import period_bounds
from oracle.core.terms import Terms, load_terms
from oracle.engine.alerts import AlertConfigError, AlertDispatcher, evaluate_alerts, load_alert_config
from oracle.engine.budget import BudgetReport, budget_status
from oracle.engine.forecast import ForecastParams, ForecastReport, forecast_period
from oracle.engine.kpi import PeriodError
from oracle.evidence.csv import parse_ts_text
from oracle.evidence.load import load_evidence

EXIT_USER_ERROR = 2


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("terms", help="terms file (YAML, schema slacomp/v1)")
    p.add_argument("--evidence", required=True, help="evidence folder (devices.csv, events.csv, ...)")
    p.add_argument("--period", required=True, help="calendar month YYYY-MM")
    p.add_argument("--as-of", dest="as_of", help="ISO-8601 instant with offset (default: now, or the period end)")
    p.add_argument("--format", choices=("table", "json"), default="table")


def add_status_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)


def add_forecast_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--sims", type=int, default=1000, help="Monte Carlo runs (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--history-days", dest="history_days", type=float, default=90.0,
                   help="fit window before --as-of, days (default %(default)s)")
    p.add_argument("--holidays", default="", help="comma-separated local dates YYYY-MM-DD repaired like weekends")
    p.add_argument("--top", type=int, default=10, help="open faults to list (table format)")
    p.add_argument("--alerts", help="alerts.yaml: evaluate burn-rate and forecast alerts and deliver them")
    p.add_argument("--alert-state", dest="alert_state", help="state file for alert deduplication and the outbox")


def _as_of(args: argparse.Namespace, terms: Terms) -> int:
    start, end = period_bounds(terms, args.period)
    if args.as_of is None:
        now = int(time.time())
        if now <= start:
            raise PeriodError("--as-of", f"period {args.period} has not started; give --as-of")
        return min(now, end)
    t = parse_ts_text(args.as_of)
    if t is None:
        raise PeriodError("--as-of", f"{args.as_of!r} is not an ISO-8601 instant with offset")
    return t


def _pct(bps: int) -> str:
    return f"{bps / 100:.2f}%"


def _dur(seconds: int, unit: str) -> str:
    if unit == "tickets":
        return str(seconds)
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    return f"{sign}{s // 3600}h{s % 3600 // 60:02d}m"


def _print_status(b: BudgetReport) -> None:
    from rich.console import Console
    from rich.table import Table

    d = b.to_json_dict()
    table = Table(title=f"{b.agreement} · {b.label} · error budgets as of {d['as_of']}")
    for col in ("objective", "subject", "attainment", "target", "elapsed", "budget", "used", "left", "burn", ""):
        table.add_column(col, justify="left" if col in ("objective", "subject", "") else "right")
    for s in b.subjects:
        flag = "[red]lost[/]" if s.lost else ("[yellow]burning[/]" if (s.burn_rate or 0) > 1 else "")
        table.add_row(s.objective, s.subject, _pct(s.attainment_bps), _pct(s.target_bps), f"{s.elapsed_share:.0%}",
                      _dur(s.budget_total, s.unit), _dur(s.budget_used, s.unit), _dur(s.budget_left, s.unit),
                      "-" if s.burn_rate is None else f"{s.burn_rate:.2f}", flag)
    Console().print(table)


def _print_forecast(f: ForecastReport, top: int, decimals: int, symbol: str) -> None:
    from rich.console import Console
    from rich.table import Table

    def money(x: float) -> str:
        return f"{x / 10**decimals:,.2f}"

    d = f.to_json_dict()
    console = Console()
    table = Table(title=f"{f.agreement} · {f.label} · forecast as of {d['as_of']} ({f.params.sims} runs)")
    for col in ("objective", "subject", "now", "target", "P(meet)", "90% interval", f"E[credit] {symbol}", "status"):
        table.add_column(col, justify="left" if col in ("objective", "subject", "status") else "right")
    colour = {"lost": "red", "at_risk": "yellow", "on_track": "green"}
    for s in sorted(f.subjects, key=lambda s: (s.p_meet, s.objective, s.subject)):
        table.add_row(s.objective, s.subject, _pct(s.budget.attainment_bps), _pct(s.budget.target_bps),
                      f"{s.p_meet:.2f}", f"{_pct(s.attainment_p05)} – {_pct(s.attainment_p95)}",
                      money(s.expected_credit), f"[{colour[s.status]}]{s.status}[/]")
    console.print(table)
    if f.priorities:
        pt = Table(title="open faults by expected credit saved if fixed now")
        for col in ("device", "site", "down since", f"saved {symbol}", "P(meet) now → fixed", ""):
            pt.add_column(col)
        for p in f.priorities[:top]:
            shifts = "; ".join(f"{o} {p0:.2f}→{p1:.2f}" for o, _, p0, p1 in p.subjects)
            pt.add_row(p.device, p.site, p.to_json_dict()["down_since"], money(p.expected_credit_saved), shifts,
                       "[red]site lost this period[/]" if p.site_lost else "")
        console.print(pt)
    console.print(f"model: {json.dumps(f.model.to_json_dict())}")
    console.print(f"{len(f.subjects)} subjects in {f.seconds:.2f} s")


def cmd_status(args: argparse.Namespace) -> int:
    terms = load_terms(args.terms)
    as_of = _as_of(args, terms)
    report = budget_status(terms, load_evidence(args.evidence, terms), args.period, as_of)
    if args.format == "json":
        print(json.dumps(report.to_json_dict(), indent=2))
    else:
        _print_status(report)
    return 0


def cmd_forecast(args: argparse.Namespace) -> int:
    terms = load_terms(args.terms)
    as_of = _as_of(args, terms)
    try:
        config = load_alert_config(args.alerts) if args.alerts else None
        if config is not None and config.agreement not in (None, terms.agreement):
            raise AlertConfigError("agreement", f"configured for {config.agreement!r}, terms are {terms.agreement!r}")
        holidays = tuple(date.fromisoformat(h.strip()).isoformat() for h in args.holidays.split(",") if h.strip())
    except (AlertConfigError, ValueError) as exc:
        print(f"slacomp: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    evidence = load_evidence(args.evidence, terms)
    params = ForecastParams(sims=args.sims, seed=args.seed, history_days=args.history_days, holidays=holidays)
    report = forecast_period(terms, evidence, args.period, as_of, params)
    out = report.to_json_dict()
    if config is not None:
        alerts = evaluate_alerts(terms, evidence, args.period, as_of, config, report)
        delivery = AlertDispatcher(config, args.alert_state).process(alerts, now=as_of)
        out["alerts"] = {"firing": [a.to_json_dict() for a in alerts], "delivery": delivery.to_json_dict()}
    if args.format == "json":
        print(json.dumps(out, indent=2))
    else:
        _print_forecast(report, args.top, terms.decimals, terms.currency_symbol)
        if "alerts" in out:
            dl = out["alerts"]["delivery"]
            print(f"alerts: {len(out['alerts']['firing'])} firing; sent {len(dl['fired'])} new, "
                  f"{len(dl['resolved'])} resolved; {dl['undelivered']} undelivered")
    return 0
