"""SLA alerts: multi-window, multi-burn-rate alerts (the SRE workbook's page and ticket
windows, scaled from a 30-day month to the period's length) and "forecast below X" alerts,
delivered to webhooks with retries, deduplicated, with resolve notifications.

Configuration lives beside the terms, not in them (the terms are hashed on chain): an
``alerts.yaml`` per agreement, loaded by `load_alert_config`::

    agreement: acme-ev-2026            # optional: refuse other agreements' terms
    webhooks:
      - url: https://ops.example.com/hooks/sla
        headers: {Authorization: "Bearer ..."}
    delivery: {attempts: 4, backoff: 0.5, timeout: 5}    # seconds; backoff doubles per retry
    burn_rate: default                 # or a list of {name, severity, long, short, burn}
    forecast: {below: 0.8, severity: ticket}             # absent: no forecast alerts
    objectives: [avail, maxdown]       # absent: all time-based objectives
"""
from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from oracle.core.calendar import iso_utc
from oracle.core.credit import burn_rate
from oracle.core.period import period_bounds
from oracle.core.terms import Terms, parse_duration
from oracle.engine.budget import TICKET_KPIS
from oracle.engine.forecast import ForecastReport, evidence_before
from oracle.engine.kpi import ESTATE, measure_window
from oracle.evidence.load import Evidence

MONTH_30D = 30 * 86_400


class AlertConfigError(ValueError):
    """The alert configuration is invalid; `field` is the offending key."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class BurnRule:
    """Fire when the burn rate over both the long and the short window is at least `burn`.
    Windows are written for a 30-day month and scaled to the period's length."""

    name: str
    severity: str
    long_s: int
    short_s: int
    burn: float

    def windows(self, period_s: int) -> tuple[int, int]:
        scale = period_s / MONTH_30D
        return max(1, round(self.long_s * scale)), max(1, round(self.short_s * scale))


# The SRE workbook's recommendation for a 30-day SLO: 2% of the budget in 1 h or 5% in 6 h
# pages; 10% in 1 day or 3 days opens a ticket. Short windows are 1/12 of the long ones.
DEFAULT_RULES = (
    BurnRule("page-1h", "page", 3600, 300, 14.4),
    BurnRule("page-6h", "page", 6 * 3600, 1800, 6.0),
    BurnRule("ticket-1d", "ticket", 86_400, 2 * 3600, 3.0),
    BurnRule("ticket-3d", "ticket", 3 * 86_400, 6 * 3600, 1.0),
)


@dataclass(frozen=True)
class Webhook:
    url: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AlertConfig:
    webhooks: tuple[Webhook, ...]
    rules: tuple[BurnRule, ...] = DEFAULT_RULES
    forecast_below: float | None = None
    forecast_severity: str = "ticket"
    objectives: tuple[str, ...] | None = None
    agreement: str | None = None
    attempts: int = 4
    backoff_s: float = 0.5
    timeout_s: float = 5.0


def _num(value: Any, field: str, lo: float, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < lo or (hi is not None and value > hi):
        raise AlertConfigError(field, f"expected a number in [{lo}, {hi if hi is not None else '∞'}], got {value!r}")
    return float(value)


def _keys(d: Any, field: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise AlertConfigError(field or "(top level)", "expected a mapping")
    unknown = set(d) - allowed
    if unknown:
        raise AlertConfigError(f"{field + '.' if field else ''}{min(unknown)}", "unknown key")
    return d


def parse_alert_config(data: Any) -> AlertConfig:
    d = _keys(data, "", {"agreement", "webhooks", "delivery", "burn_rate", "forecast", "objectives"})
    hooks = []
    for i, h in enumerate(d.get("webhooks") or []):
        h = _keys(h, f"webhooks[{i}]", {"url", "headers"})
        url = h.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise AlertConfigError(f"webhooks[{i}].url", "expected an http(s) URL")
        headers = _keys(h.get("headers") or {}, f"webhooks[{i}].headers", set(h.get("headers") or {}))
        hooks.append(Webhook(url, tuple((str(k), str(v)) for k, v in headers.items())))
    delivery = _keys(d.get("delivery") or {}, "delivery", {"attempts", "backoff", "timeout"})
    rules: tuple[BurnRule, ...] = DEFAULT_RULES
    raw = d.get("burn_rate", "default")
    if raw in (None, False, "none"):
        rules = ()
    elif raw != "default":
        if not isinstance(raw, list):
            raise AlertConfigError("burn_rate", "expected 'default', 'none' or a list of rules")
        out = []
        for i, r in enumerate(raw):
            f = f"burn_rate[{i}]"
            r = _keys(r, f, {"name", "severity", "long", "short", "burn"})
            try:
                long_s = parse_duration(r.get("long"), f + ".long")
                short_s = parse_duration(r.get("short"), f + ".short")
            except ValueError as exc:
                raise AlertConfigError(f, str(exc)) from None
            out.append(BurnRule(str(r.get("name", f"rule-{i}")), str(r.get("severity", "page")), long_s, short_s,
                                _num(r.get("burn"), f + ".burn", 0.0)))
        rules = tuple(out)
    fc = _keys(d.get("forecast") or {}, "forecast", {"below", "severity"})
    objectives = d.get("objectives")
    if objectives is not None and not (isinstance(objectives, list) and all(isinstance(o, str) for o in objectives)):
        raise AlertConfigError("objectives", "expected a list of objective ids")
    return AlertConfig(
        tuple(hooks), rules,
        _num(fc["below"], "forecast.below", 0.0, 1.0) if "below" in fc else None,
        str(fc.get("severity", "ticket")),
        tuple(objectives) if objectives is not None else None,
        str(d["agreement"]) if d.get("agreement") is not None else None,
        int(_num(delivery.get("attempts", 4), "delivery.attempts", 1, 20)),
        _num(delivery.get("backoff", 0.5), "delivery.backoff", 0.0, 600.0),
        _num(delivery.get("timeout", 5.0), "delivery.timeout", 0.1, 600.0))


def load_alert_config(path: str | Path) -> AlertConfig:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise AlertConfigError(str(path), str(exc)) from None
    return parse_alert_config(data)


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Alert:
    """A firing condition. `key` identifies it across evaluations (deduplication)."""

    agreement: str
    period: str
    rule: str  # a burn rule's name, or "forecast"
    severity: str
    objective: str
    subject: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> str:
        return "/".join((self.agreement, self.period, self.rule, self.objective, self.subject))

    @property
    def dedup_key(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()[:32]

    def to_json_dict(self) -> dict[str, Any]:
        return {"key": self.key, "dedup_key": self.dedup_key, "agreement": self.agreement, "period": self.period,
                "rule": self.rule, "severity": self.severity, "objective": self.objective, "subject": self.subject,
                "summary": self.summary, "details": self.details}


def _subjects(terms: Terms, evidence: Evidence, scope: str) -> list[str]:
    if scope == "estate":
        return [ESTATE]
    if scope == "per_site":
        return [s.id for s in terms.sites]
    return list(evidence.device_ids)


def burn_rate_alerts(terms: Terms, evidence: Evidence, label: str, as_of: int, config: AlertConfig) -> list[Alert]:
    """Burn-rate alerts at `as_of`: burn = (bad / counted) / (1 − target) over each window
    (rolling, ending at as_of, not before the evidence starts)."""
    if not config.rules:
        return []
    start, end = period_bounds(terms, label)
    ev = evidence_before(evidence, as_of)
    first = int(ev.ev_ts.min()) if len(ev.ev_ts) else as_of
    objs = [o for o in terms.objectives if o.kpi not in TICKET_KPIS
            and (config.objectives is None or o.id in config.objectives)]
    cache: dict[int, dict[tuple[str, str], tuple[int, int]]] = {}

    def window(length: int) -> dict[tuple[str, str], tuple[int, int]]:
        if length not in cache:
            w0 = max(as_of - length, first)
            cache[length] = measure_window(terms, ev, w0, as_of) if w0 < as_of else {}
        return cache[length]

    def burn(m: dict[tuple[str, str], tuple[int, int]], key: tuple[str, str], target: int) -> float:
        rate = burn_rate(target, *m.get(key, (0, 0)), digits=None)
        return float("inf") if rate is None else rate

    out = []
    for rule in config.rules:
        long_s, short_s = rule.windows(end - start)
        lw, sw = window(long_s), window(short_s)
        for o in objs:
            for subj in _subjects(terms, ev, o.scope):
                b_long, b_short = burn(lw, (o.id, subj), o.target_bps), burn(sw, (o.id, subj), o.target_bps)
                if b_long >= rule.burn and b_short >= rule.burn:
                    out.append(Alert(terms.agreement, label, rule.name, rule.severity, o.id, subj,
                                     f"{o.id} {subj}: burning the error budget {b_long:.1f}x over {long_s}s "
                                     f"({b_short:.1f}x over {short_s}s); threshold {rule.burn}x",
                                     {"burn_long": _finite(b_long), "burn_short": _finite(b_short),
                                      "long_s": long_s, "short_s": short_s, "threshold": rule.burn,
                                      "as_of": iso_utc(as_of)}))
    return out


def _finite(x: float) -> float | None:
    return None if x == float("inf") else round(x, 3)


def forecast_alerts(report: ForecastReport, config: AlertConfig) -> list[Alert]:
    """Subjects whose probability of meeting the target is below `forecast.below`."""
    if config.forecast_below is None:
        return []
    out = []
    for s in report.subjects:
        if config.objectives is not None and s.objective not in config.objectives:
            continue
        if s.p_meet < config.forecast_below:
            lost = " (already lost this period)" if s.status == "lost" else ""
            out.append(Alert(report.agreement, report.label, "forecast", config.forecast_severity, s.objective,
                             s.subject, f"{s.objective} {s.subject}: P(meet target) = {s.p_meet:.2f} "
                             f"< {config.forecast_below}" + lost,
                             {"p_meet": round(s.p_meet, 4), "status": s.status, "threshold": config.forecast_below,
                              "attainment_bps": s.budget.attainment_bps, "target_bps": s.budget.target_bps,
                              "as_of": iso_utc(report.as_of)}))
    return out


# --------------------------------------------------------------------------- delivery


@dataclass
class Notification:
    """One message to send: an alert firing or resolved. `pending` lists the webhook URLs
    that have not acknowledged it yet."""

    event_id: str
    status: str  # "firing" | "resolved"
    alert: dict[str, Any]
    at: str
    pending: list[str]
    attempts: int = 0
    last_error: str = ""

    def body(self) -> bytes:
        return json.dumps({"event_id": self.event_id, "status": self.status, "at": self.at, **self.alert},
                          sort_keys=True).encode()


@dataclass(frozen=True)
class DeliveryReport:
    fired: tuple[str, ...]  # alert keys newly firing
    resolved: tuple[str, ...]
    still_firing: tuple[str, ...]  # deduplicated: nothing sent
    delivered: int  # (notification, webhook) pairs acknowledged
    undelivered: int  # left in the outbox for the next run

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self) | {"fired": list(self.fired), "resolved": list(self.resolved),
                               "still_firing": list(self.still_firing)}


class AlertDispatcher:
    """Turns successive alert evaluations into deduplicated webhook notifications: a new
    alert is sent once ("firing"), a repeated one not again, a vanished one as "resolved".
    Deliveries retry with exponential backoff on connection errors, timeouts, 429 and 5xx;
    what still fails stays in the outbox (persisted with the state) for the next run.
    Receivers can drop duplicates by `event_id` (also in the X-Slacomp-Event-Id header)."""

    def __init__(self, config: AlertConfig, state_path: str | Path | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.state_path = Path(state_path) if state_path else None
        self.sleep = sleep
        self.active: dict[str, dict[str, Any]] = {}
        self.outbox: list[Notification] = []
        self.seq = 0
        if self.state_path and self.state_path.is_file():
            st = json.loads(self.state_path.read_text())
            self.active = st.get("active", {})
            self.outbox = [Notification(**n) for n in st.get("outbox", [])]
            self.seq = int(st.get("seq", 0))

    def process(self, alerts: Sequence[Alert], now: int | None = None) -> DeliveryReport:
        """Record the alerts firing now, send what changed, retry the outbox."""
        at = iso_utc(int(time.time()) if now is None else now)
        firing = {a.key: a for a in alerts}
        new = [k for k in firing if k not in self.active]
        gone = [k for k in self.active if k not in firing]
        for k in new:
            self.active[k] = firing[k].to_json_dict()
            self._queue("firing", self.active[k], at)
        for k in gone:
            alert = self.active.pop(k)
            self._queue("resolved", alert, at)
        delivered = self._flush()
        self._save()
        return DeliveryReport(tuple(new), tuple(gone), tuple(k for k in firing if k not in new), delivered,
                              sum(len(n.pending) for n in self.outbox))

    def _queue(self, status: str, alert: dict[str, Any], at: str) -> None:
        self.seq += 1
        event_id = f"{alert['dedup_key']}-{status}-{self.seq}"
        self.outbox.append(Notification(event_id, status, alert, at, [h.url for h in self.config.webhooks]))

    def _flush(self) -> int:
        hooks = {h.url: h for h in self.config.webhooks}
        delivered = 0
        for n in self.outbox:
            for url in list(n.pending):
                hook = hooks.get(url)
                if hook is None or self._post(hook, n):
                    n.pending.remove(url)
                    delivered += hook is not None
        self.outbox = [n for n in self.outbox if n.pending]
        return delivered

    def _post(self, hook: Webhook, n: Notification) -> bool:
        """POST with retries; True once acknowledged (2xx) or refused for good (other 4xx)."""
        delay = self.config.backoff_s
        for attempt in range(self.config.attempts):
            n.attempts += 1
            req = urllib.request.Request(hook.url, data=n.body(), method="POST", headers={
                "Content-Type": "application/json", "X-Slacomp-Event-Id": n.event_id,
                "X-Slacomp-Dedup-Key": n.alert["dedup_key"], **dict(hook.headers)})
            try:
                with urllib.request.urlopen(req, timeout=self.config.timeout_s) as resp:
                    if 200 <= resp.status < 300:
                        return True
            except urllib.error.HTTPError as exc:
                n.last_error = f"HTTP {exc.code}"
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    return True  # refused for good: retrying cannot help
            except (urllib.error.URLError, OSError) as exc:
                n.last_error = str(exc)
            if attempt + 1 < self.config.attempts:
                self.sleep(delay)
                delay *= 2
        return False

    def _save(self) -> None:
        if self.state_path is None:
            return
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"active": self.active, "outbox": [asdict(n) for n in self.outbox],
                                   "seq": self.seq}, indent=1))
        tmp.replace(self.state_path)


def evaluate_alerts(terms: Terms, evidence: Evidence, label: str, as_of: int, config: AlertConfig,
                    report: ForecastReport | None = None) -> list[Alert]:
    """Every alert firing at `as_of`: burn-rate rules, plus forecast alerts given a forecast."""
    if config.agreement is not None and config.agreement != terms.agreement:
        raise AlertConfigError("agreement", f"configured for {config.agreement!r}, terms are {terms.agreement!r}")
    alerts = burn_rate_alerts(terms, evidence, label, as_of, config)
    if report is not None:
        alerts += forecast_alerts(report, config)
    return alerts
