"""The regulator-facing compliance report of one calendar year (`slacomp compliance`): NEVI port
uptime (23 CFR 680.116(b)) and PCPR network reliability (UK PCPR 2023 regs 7-8), with the
per-port table, the excluded outages and their causes, the network figures and the method.

It lives beside the KPI engine because it is the same measurement on the same evidence (the
operator's, like `slacomp kpi`), not a check of a report against the chain (oracle.verify).
Pure: builds a typed report and renders it; the caller writes the files."""
from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from oracle.core.calendar import iso_utc, month_bounds
from oracle.core.period import periods, window_bounds
from oracle.core.terms import Terms, terms_hash
from oracle.engine import regulatory
from oracle.engine.kpi import PeriodError
from oracle.engine.regulatory import ExcludedOutage, NeviPort, PcprPoint
from oracle.evidence.commitment import evidence_leaves
from oracle.evidence.load import Evidence

NEVI_MIN = Fraction(97, 100)  # 23 CFR 680.116(b): each port's average uptime must exceed 97%
PCPR_MIN = Fraction(99, 100)  # PCPR reg 7(2): the network is on average reliable 99% of the time


def percent(r: Fraction, digits: int = 3) -> str:
    """A ratio as a percentage, rounded down to `digits` decimals (never overstated)."""
    scaled = r.numerator * 100 * 10**digits // r.denominator
    return f"{scaled // 10**digits}.{scaled % 10**digits:0{digits}d}"


def mean(ratios: list[Fraction]) -> Fraction:
    return sum(ratios, Fraction(0)) / len(ratios) if ratios else Fraction(1)


@dataclass(frozen=True)
class MonthFigure:
    """NEVI evaluated at the end of one month: every port over its trailing 12 months."""

    label: str
    start: int  # of the trailing window (the term's start at most 11 months earlier)
    end: int
    ports: int
    network: Fraction
    below: tuple[str, ...]  # ports at or under 97%


@dataclass(frozen=True)
class ComplianceReport:
    agreement: str
    year: int
    timezone: str
    start: int  # the year inside the term
    end: int
    terms_hash: str
    evidence_root: str  # commitment to the evidence of [start, end) (docs/terms.md §5)
    nevi: tuple[NeviPort, ...]
    pcpr: tuple[PcprPoint, ...]
    excluded: tuple[ExcludedOutage, ...]
    months: tuple[MonthFigure, ...]
    ineligible: str  # pcpr: reliable | not_counted

    @property
    def nevi_counted(self) -> list[NeviPort]:
        return [p for p in self.nevi if p.counted]

    @property
    def pcpr_counted(self) -> list[PcprPoint]:
        return [p for p in self.pcpr if p.counted]

    @property
    def nevi_network(self) -> Fraction:
        return mean([p.ratio for p in self.nevi_counted])

    @property
    def pcpr_network(self) -> Fraction:
        return mean([p.ratio for p in self.pcpr_counted])

    @property
    def nevi_ports_below(self) -> list[str]:
        return [p.device_id for p in self.nevi_counted if p.ratio <= NEVI_MIN]

    @property
    def pcpr_met(self) -> bool:
        return self.pcpr_network >= PCPR_MIN

    def to_json_dict(self) -> dict[str, Any]:
        def frac(r: Fraction) -> dict[str, Any]:
            return {"percent": percent(r), "bps": regulatory.ratio_bps(r),
                    "exact": f"{r.numerator}/{r.denominator}"}

        return {
            "agreement": self.agreement, "year": self.year, "timezone": self.timezone,
            "window": {"start": iso_utc(self.start), "end": iso_utc(self.end)},
            "terms_hash": self.terms_hash, "evidence_root": self.evidence_root,
            "nevi": {
                "rule": "23 CFR 680.116(b)", "port_minimum_percent": "97",
                "network": frac(self.nevi_network), "ports_counted": len(self.nevi_counted),
                "ports_at_or_below_minimum": self.nevi_ports_below,
                "ports": [{"port": p.device_id, "site": p.site_id, "window_minutes": p.window_min,
                           "outage_minutes": p.outage_min, "excluded_outage_minutes": p.excluded_min,
                           "uptime": frac(p.ratio), "counted": p.counted} for p in self.nevi],
                "monthly": [{"month": m.label, "window": {"start": iso_utc(m.start), "end": iso_utc(m.end)},
                             "ports": m.ports, "network": frac(m.network), "ports_at_or_below_minimum": list(m.below)}
                            for m in self.months],
            },
            "excluded_outages": [{"start": iso_utc(x.start), "end": iso_utc(x.end), "scope": x.scope,
                                  "cause": x.cause, "line": x.line,
                                  "ports": [{"port": d, "excused_outage_s": s} for d, s in x.ports]}
                                 for x in self.excluded],
            "pcpr": {
                "rule": "PCPR 2023 reg 7", "network_minimum_percent": "99", "ineligible": self.ineligible,
                "network": frac(self.pcpr_network), "met": self.pcpr_met,
                "charge_points_operated": len(self.pcpr_counted),
                "charge_points": [{"charge_point": p.device_id, "site": p.site_id, "open_s": p.open_s,
                                   "working_s": p.working_s, "not_working_s": p.not_working_s,
                                   "ineligible_s": p.ineligible_s, "reliability": frac(p.ratio),
                                   "counted": p.counted} for p in self.pcpr],
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def to_markdown(self) -> str:
        nevi_bps = regulatory.ratio_bps(self.nevi_network)
        lines = [
            f"# Charging reliability report {self.year}: `{self.agreement}`", "",
            f"Measured from {iso_utc(self.start)} to {iso_utc(self.end)} (calendar year in {self.timezone}, "
            "inside the agreement's term). ",
            f"Terms hash `{self.terms_hash}`; evidence root `{self.evidence_root}`.", "",
            "## US NEVI port uptime (23 CFR 680.116(b))", "",
            f"Network average of {len(self.nevi_counted)} ports: **{percent(self.nevi_network)}%** "
            f"({nevi_bps} bps). Ports at or below 97%: "
            f"{', '.join(f'`{d}`' for d in self.nevi_ports_below) or 'none'}.", "",
            "| port | site | minutes (D) | outage minutes | excluded outage minutes | uptime % |",
            "|---|---|---:|---:|---:|---:|",
        ]
        lines += [f"| `{p.device_id}` | {p.site_id} | {p.window_min:,} | {p.outage_min:,} | {p.excluded_min:,} | "
                  f"{percent(p.ratio) if p.counted else '—'} |" for p in self.nevi]
        lines += ["", "### Evaluated monthly over the previous 12 months", "",
                  "| month | window from | ports | network uptime % | ports at or below 97% |",
                  "|---|---|---:|---:|---|"]
        lines += [f"| {m.label} | {iso_utc(m.start)[:10]} | {m.ports} | {percent(m.network)} | "
                  f"{', '.join(m.below) or '—'} |" for m in self.months]
        lines += ["", "### Excluded outages and their causes", ""]
        if self.excluded:
            lines += ["| from | to | scope | cause | ports (excused outage minutes) |", "|---|---|---|---|---|"]
            lines += [f"| {iso_utc(x.start)} | {iso_utc(x.end)} | `{x.scope}` | {x.cause or '(no reason given)'} | "
                      f"{', '.join(f'`{d}` {s // 60:,}' for d, s in x.ports) or '—'} |" for x in self.excluded]
        else:
            lines.append("None.")
        lines += [
            "", "## UK PCPR network reliability (PCPR 2023 regs 7-8)", "",
            f"Network average of {len(self.pcpr_counted)} charge points operated in the year: "
            f"**{percent(self.pcpr_network)}%** ({regulatory.ratio_bps(self.pcpr_network)} bps): "
            f"{'meets' if self.pcpr_met else 'does NOT meet'} the 99% requirement.", "",
            "| charge point | site | open hours | working h | not working h | ineligible h | reliability % |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        lines += [f"| `{p.device_id}` | {p.site_id} | {_hours(p.open_s)} | {_hours(p.working_s)} | "
                  f"{_hours(p.not_working_s)} | {_hours(p.ineligible_s)} | "
                  f"{percent(p.ratio) if p.counted else '—'} |" for p in self.pcpr]
        lines += ["", "## Method", ""] + [f"- {n}" for n in _notes(self.ineligible)]
        return "\n".join(lines) + "\n"


def _hours(seconds: int) -> str:
    return f"{seconds / 3600:,.2f}"


def _notes(ineligible: str) -> list[str]:
    return [
        "Device states come from the chargers' own protocol (OCPP, OCPI or files), mapped by the tables in "
        "docs/terms.md §3.1; a port is a device (a charge point or a connector such as `CP-17/1`).",
        "NEVI: up = available or in use; every other state, and no fresh status (stale_after), is outage. "
        "Outage seconds are rounded up to minutes, excluded outage seconds and deployed time down. "
        "D = min(525,600, deployed minutes in the window): the rule's 525,600 for a port deployed the whole "
        "window (leap years included), fewer for a shorter history. Uptime = (D − (outage − excluded)) / D.",
        "NEVI exclusions: outage inside an exclusions row that applies to the port (`*`, its site or itself); "
        "the row's reason is the cause. Overlapping rows each list the outage they cover; a minute counts once.",
        "PCPR: only the site's opening hours (its business hours) count. Working = AVAILABLE, CHARGING, "
        "RESERVED; not working = INOPERATIVE, OUTOFORDER, and a charger reported offline; ineligible = "
        "UNKNOWN, BLOCKED and no fresh status, "
        + ("counted as reliable (reg 7(3)(b))." if ineligible == "reliable" else "left out of the count."),
        "Network figures are the mean of the ports' (charge points') exact ratios; percentages are rounded down.",
    ]


def compliance_report(terms: Terms, evidence: Evidence, year: int) -> ComplianceReport:
    """The compliance report of calendar `year` (in the agreement's time zone), inside the term."""
    all_periods = periods(terms)
    y0, y1 = month_bounds(terms.timezone, f"{year:04d}-01")[0], month_bounds(terms.timezone, f"{year:04d}-12")[1]
    start, end = max(y0, all_periods[0].start), min(y1, all_periods[-1].end)
    if start >= end:
        raise PeriodError("year", f"{year} is outside the term {all_periods[0].label}..{all_periods[-1].label}")
    pcpr_objectives = [o for o in terms.objectives if o.kpi == "pcpr_reliability"]
    ineligible = pcpr_objectives[0].ineligible if pcpr_objectives else "reliable"
    months = []
    for p in all_periods:
        if start <= p.start < end:
            w0, w1 = window_bounds(terms, "trailing_12_months", p.label)
            ports = [q for q in regulatory.nevi_ports(terms, evidence, w0, w1) if q.counted]
            months.append(MonthFigure(p.label, w0, w1, len(ports), mean([q.ratio for q in ports]),
                                      tuple(q.device_id for q in ports if q.ratio <= NEVI_MIN)))
    root = "0x" + evidence_leaves(terms, evidence, start, end).root.hex()
    seg = regulatory.segments(terms, evidence, start, end)
    return ComplianceReport(terms.agreement, year, terms.timezone, start, end, terms_hash(terms), root,
                            regulatory.nevi_ports(terms, evidence, start, end, seg),
                            regulatory.pcpr_points(terms, evidence, start, end, ineligible, seg),
                            regulatory.excluded_outages(terms, evidence, start, end), tuple(months), ineligible)
