"""Agreement terms (`schema: slacomp/v1`): parse and validate the YAML into a typed, normalised
model, and define its canonical bytes and `termsHash` (see docs/terms.md)."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfoNotFoundError

import yaml

from oracle.core.calendar import WEEK_24X7, WeekHours, parse_label, zone
from oracle.core.credit import BPS, Tier, validate_tiers
from oracle.core.status_maps import check_overrides

if TYPE_CHECKING:
    from oracle.core.settlement import Settlement

SCHEMA = "slacomp/v1"
KPIS = ("site_availability", "site_max_down", "device_uptime", "ticket_response", "ticket_resolution",
        "nevi_uptime", "pcpr_reliability")
# Regulatory KPIs (oracle.engine.regulatory): the regulator's figure, not the terms' telemetry classes.
REGULATORY_KPIS = ("nevi_uptime", "pcpr_reliability")
SCOPES = ("estate", "per_site", "per_device")
_SCOPES_OF = {
    "site_availability": ("per_site", "estate"),
    "site_max_down": ("per_site", "estate"),
    "device_uptime": ("estate", "per_site", "per_device"),
    "ticket_response": ("per_site", "estate"),
    "ticket_resolution": ("per_site", "estate"),
    "nevi_uptime": ("per_device", "per_site", "estate"),
    "pcpr_reliability": ("estate", "per_site", "per_device"),
}
# Objective windows: the period itself (default), the 12 calendar months ending with the period,
# or the calendar year to the period's end; both longer ones start no earlier than the term.
WINDOWS = ("period", "trailing_12_months", "calendar_year")
# pcpr_reliability: OCPI UNKNOWN/BLOCKED time ("ineligible for measurement", PCPR reg 7(3)(b))
# counts as reliable (the regulation's text) or is left out of the count.
INELIGIBLE = ("reliable", "not_counted")
MISSING_DATA = ("down", "up", "exclude")
MAINTENANCE = ("exclude", "down")
EXCLUSION_MODES = ("remove", "count_as_up")
CLOCKS = ("wall", "business_hours")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_HHMM = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


class TermsError(ValueError):
    """The terms file is invalid; `field` is the path of the offending key, e.g.
    ``objectives[2].credits[0].below_bps``."""

    def __init__(self, field: str, message: str, source: str = "") -> None:
        self.field = field
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {message}")


@dataclass(frozen=True)
class Site:
    id: str
    timezone: str
    business_hours: WeekHours  # per weekday (Monday first), sorted minute ranges
    fee: int


@dataclass(frozen=True)
class Objective:
    id: str
    kpi: str
    scope: str
    target_bps: int
    tiers: tuple[Tier, ...]
    device_fee: int = 0
    min_available: int = 1  # site_availability
    max_down: int = 0  # site_max_down
    targets: tuple[tuple[str, int], ...] = ()  # ticket KPIs: (severity, seconds), sorted
    clock: str = "wall"  # ticket KPIs
    window: str = "period"  # see WINDOWS
    ineligible: str = "reliable"  # pcpr_reliability: see INELIGIBLE


@dataclass(frozen=True)
class Terms:
    agreement: str
    timezone: str
    currency_symbol: str
    decimals: int
    monthly_fee: int
    stale_after: int  # seconds
    missing_data: str
    maintenance_state: str
    exclusion_mode: str
    sites: tuple[Site, ...]
    objectives: tuple[Objective, ...]
    credit_cap_bps: int
    first_period: str
    periods: int
    # telemetry.status_map: {table: ((protocol status, state), ...)} overrides of the built-in tables
    status_map: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    settlement: Settlement | None = None  # the optional `settlement:` block (oracle.core.settlement)
    allow_party_signers: bool = False  # may the vendor or customer be an oracle or arbiter?

    def site(self, site_id: str) -> Site:
        for s in self.sites:
            if s.id == site_id:
                return s
        raise KeyError(site_id)


# --------------------------------------------------------------------------- parsing


class _Reader:
    """Walks a YAML mapping, recording which keys were read so unknown keys are reported."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise TermsError(path or "(top level)", "expected a mapping")
        self.data = data
        self.path = path
        self.seen: set[str] = set()

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, default: Any = ..., *, required: bool = False) -> Any:
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            if default is ... or required:
                raise TermsError(self.sub(key), "required key is missing")
            return default
        return self.data[key]

    def finish(self) -> None:
        unknown = sorted(str(k) for k in self.data if str(k) not in self.seen)
        if unknown:
            raise TermsError(self.sub(unknown[0]), "unknown key (check the spelling; see docs/terms.md)")


def _text(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TermsError(field, f"expected a string, got {value!r}")
    s = unicodedata.normalize("NFC", str(value)).strip()
    if not s:
        raise TermsError(field, "must not be empty")
    return s


def _ident(value: Any, field: str) -> str:
    s = _text(value, field)
    if not _ID.match(s):
        raise TermsError(field, f"{s!r} is not an id (letters, digits, '_', '.', '-')")
    return s


def _int(value: Any, field: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        else:
            raise TermsError(field, f"expected an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise TermsError(field, f"{value} is not in {lo}..{'' if hi is None else hi}")
    return int(value)


def _choice(value: Any, field: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise TermsError(field, f"{value!r} is not one of {', '.join(options)}")
    return str(value)


def parse_money(value: Any, decimals: int, field: str) -> int:
    """A decimal string (or integer) of currency units -> integer smallest units, exactly."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TermsError(field, f"write money as a quoted decimal string, e.g. \"5000\", not {value!r}")
    if not isinstance(value, (str, int)):
        raise TermsError(field, f"expected a decimal string, got {value!r}")
    text = str(value).strip()
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        raise TermsError(field, f"{text!r} is not a non-negative decimal number")
    try:
        scaled = Decimal(text).scaleb(decimals)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise TermsError(field, str(exc)) from exc
    if scaled != scaled.to_integral_value():
        raise TermsError(field, f"{text} has more than {decimals} decimal places")
    return int(scaled)


def parse_duration(value: Any, field: str) -> int:
    """'15m', '1h30m', '2d', '90s' or an integer number of seconds -> seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and value.strip() and (m := _DURATION.match(value.strip())):
        d, h, mi, s = (int(g) if g else 0 for g in m.groups())
        seconds = ((d * 24 + h) * 60 + mi) * 60 + s
    else:
        raise TermsError(field, f"{value!r} is not a duration like 90s, 15m, 4h, 1d")
    if seconds <= 0:
        raise TermsError(field, "duration must be positive")
    return seconds


def _timezone(value: Any, field: str) -> str:
    name = _text(value, field)
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TermsError(field, f"{name!r} is not an IANA time zone name (e.g. Europe/London)") from None
    return name


def _day_set(spec: str, field: str) -> list[int]:
    days: list[int] = []
    for part in spec.lower().replace(" ", "").split(","):
        if part in ("daily", "all"):
            days.extend(range(7))
            continue
        ends = part.split("-")
        if len(ends) > 2 or any(e not in DAYS for e in ends):
            raise TermsError(field, f"{spec!r} is not a day (mon..sun), range (mon-fri) or list (sat,sun)")
        a, b = DAYS.index(ends[0]), DAYS.index(ends[-1])
        days.extend((a + k) % 7 for k in range((b - a) % 7 + 1))
    return days


def _window(value: Any, field: str) -> tuple[int, int]:
    if not isinstance(value, str):
        raise TermsError(field, f"write hours as a quoted string \"HH:MM-HH:MM\", got {value!r}")
    m = _HHMM.match(value.strip())
    if not m:
        raise TermsError(field, f"{value!r} is not a window written HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    a, b = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or b > 1440:
        raise TermsError(field, f"{value!r} is not a valid time of day (00:00 to 24:00)")
    if b <= a:
        raise TermsError(field, f"{value!r} ends before it starts; split overnight hours over two days")
    return a, b


def parse_business_hours(value: Any, field: str) -> WeekHours:
    if value is None:
        return WEEK_24X7
    if not isinstance(value, dict):
        raise TermsError(field, "expected a mapping of days to \"HH:MM-HH:MM\" windows")
    per_day: list[list[tuple[int, int]]] = [[] for _ in range(7)]
    named: set[int] = set()
    for spec, windows in value.items():
        sub = f"{field}.{spec}"
        days = _day_set(str(spec), sub)
        if named & set(days):
            raise TermsError(sub, "a day is listed twice")
        named |= set(days)
        items = windows if isinstance(windows, list) else [windows]
        ranges = [_window(w, f"{sub}[{i}]" if isinstance(windows, list) else sub) for i, w in enumerate(items)]
        for d in days:
            per_day[d].extend(ranges)
    out = []
    for ranges in per_day:
        merged: list[tuple[int, int]] = []
        for a, b in sorted(ranges):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
            else:
                merged.append((a, b))
        out.append(tuple(merged))
    return tuple(out)


def _tiers(value: Any, field: str) -> tuple[Tier, ...]:
    if not isinstance(value, list):
        raise TermsError(field, "expected a list of {below_bps, credit_bps} tiers")
    tiers: list[Tier] = []
    for i, item in enumerate(value):
        r = _Reader(item, f"{field}[{i}]")
        below = _int(r.get("below_bps", required=True), r.sub("below_bps"), 0)
        credit = _int(r.get("credit_bps", required=True), r.sub("credit_bps"), 0)
        r.finish()
        tiers.append((below, credit))
    try:
        validate_tiers(tiers)
    except ValueError as exc:
        # credit.py reports "credits[i].key: message"; re-root it under this objective.
        path, _, message = str(exc).partition(": ")
        prefix = field.rsplit(".", 1)[0] if field.endswith(".credits") else field
        raise TermsError(f"{prefix}.{path}", message) from None
    return tuple(tiers)


def _objective(item: Any, field: str, decimals: int, severities_ok: bool = True) -> Objective:
    r = _Reader(item, field)
    oid = _ident(r.get("id", required=True), r.sub("id"))
    kpi = _choice(r.get("kpi", required=True), r.sub("kpi"), KPIS)
    scope = _choice(r.get("scope", required=True), r.sub("scope"), SCOPES)
    if scope not in _SCOPES_OF[kpi]:
        raise TermsError(r.sub("scope"), f"{kpi} supports scope {', '.join(_SCOPES_OF[kpi])}, not {scope}")
    target = _int(r.get("target_bps", required=True), r.sub("target_bps"), 0, BPS)
    tiers = _tiers(r.get("credits", required=True), r.sub("credits"))
    device_fee = parse_money(r.get("device_fee", "0"), decimals, r.sub("device_fee"))
    if device_fee and scope != "per_device":
        raise TermsError(r.sub("device_fee"), "only per_device objectives take a device_fee")
    kwargs: dict[str, Any] = {}
    if kpi == "site_availability":
        kwargs["min_available"] = _int(r.get("min_available", 1), r.sub("min_available"), 0)
    if kpi == "site_max_down":
        kwargs["max_down"] = _int(r.get("max_down", 0), r.sub("max_down"), 0)
    if kpi.startswith("ticket_"):
        raw = r.get("targets", required=True)
        if not isinstance(raw, dict) or not raw:
            raise TermsError(r.sub("targets"), "expected a mapping of severity to duration, e.g. {P1: 1h}")
        kwargs["targets"] = tuple(
            sorted((_ident(k, r.sub("targets")), parse_duration(v, f"{r.sub('targets')}.{k}")) for k, v in raw.items())
        )
        kwargs["clock"] = _choice(r.get("clock", "wall"), r.sub("clock"), CLOCKS)
    kwargs["window"] = _choice(r.get("window", "period"), r.sub("window"), WINDOWS)
    if kpi == "pcpr_reliability":
        kwargs["ineligible"] = _choice(r.get("ineligible", "reliable"), r.sub("ineligible"), INELIGIBLE)
    r.finish()
    return Objective(oid, kpi, scope, target, tiers, device_fee, **kwargs)


def parse_terms(text: str, source: str = "<terms>") -> Terms:
    """Parse and validate terms YAML. Raises TermsError naming the offending field."""
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise TermsError("(yaml)", f"not valid YAML: {exc}", source) from None
    try:
        return _parse(data)
    except TermsError as exc:
        raise TermsError(exc.field, exc.message, source) from None


@lru_cache(maxsize=64)
def parse_terms_bytes(data: bytes) -> Terms:
    """parse_terms of a terms file's bytes (UTF-8), parsed once per process: Terms are
    immutable, and an oracle closes every period of an agreement with the same file."""
    return parse_terms(data.decode("utf-8"))


def load_terms(path: str | Path) -> Terms:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TermsError("(file)", f"cannot read terms: {exc.strerror}", str(p)) from None
    return parse_terms(text, str(p))


def _parse(data: Any) -> Terms:
    r = _Reader(data, "")
    schema = r.get("schema", required=True)
    if schema != SCHEMA:
        raise TermsError("schema", f"{schema!r} is not supported; expected {SCHEMA}")
    agreement = _ident(r.get("agreement", required=True), "agreement")
    tz = _timezone(r.get("timezone", required=True), "timezone")

    cur = _Reader(r.get("currency", required=True), "currency")
    symbol = _text(cur.get("symbol", required=True), "currency.symbol")
    decimals = _int(cur.get("decimals", required=True), "currency.decimals", 0, 36)
    cur.finish()
    monthly_fee = parse_money(r.get("monthly_fee", required=True), decimals, "monthly_fee")

    tel = _Reader(r.get("telemetry", {}), "telemetry")
    stale = parse_duration(tel.get("stale_after", required=True), "telemetry.stale_after")
    missing = _choice(tel.get("missing_data", "down"), "telemetry.missing_data", MISSING_DATA)
    maint = _choice(tel.get("maintenance_state", "exclude"), "telemetry.maintenance_state", MAINTENANCE)
    status_map = _status_map(tel.get("status_map", {}), "telemetry.status_map")
    tel.finish()
    mode = _choice(r.get("exclusion_mode", "remove"), "exclusion_mode", EXCLUSION_MODES)

    raw_sites = r.get("sites", required=True)
    if not isinstance(raw_sites, list) or not raw_sites:
        raise TermsError("sites", "expected a non-empty list of sites")
    sites: list[Site] = []
    for i, item in enumerate(raw_sites):
        sr = _Reader(item, f"sites[{i}]")
        sid = _ident(sr.get("id", required=True), sr.sub("id"))
        if any(s.id == sid for s in sites):
            raise TermsError(sr.sub("id"), f"duplicate site id {sid!r}")
        stz = _timezone(sr.get("timezone", tz), sr.sub("timezone"))
        hours = parse_business_hours(sr.get("business_hours", None), sr.sub("business_hours"))
        fee = parse_money(sr.get("fee", "0"), decimals, sr.sub("fee"))
        sr.finish()
        sites.append(Site(sid, stz, hours, fee))

    raw_obj = r.get("objectives", required=True)
    if not isinstance(raw_obj, list) or not raw_obj:
        raise TermsError("objectives", "expected a non-empty list of objectives")
    objectives: list[Objective] = []
    for i, item in enumerate(raw_obj):
        o = _objective(item, f"objectives[{i}]", decimals)
        if any(x.id == o.id for x in objectives):
            raise TermsError(f"objectives[{i}].id", f"duplicate objective id {o.id!r}")
        objectives.append(o)

    cap = _int(r.get("credit_cap_bps", BPS), "credit_cap_bps", 0, BPS)

    term = _Reader(r.get("term", required=True), "term")
    first = _text(term.get("first_period", required=True), "term.first_period")
    try:
        parse_label(first)
    except ValueError as exc:
        raise TermsError("term.first_period", str(exc)) from None
    periods = _int(term.get("periods", required=True), "term.periods", 1, 1200)
    term.finish()
    party = r.get("allow_party_signers", False)
    if not isinstance(party, bool):
        raise TermsError("allow_party_signers", f"expected true or false, got {party!r}")
    raw_settlement = r.get("settlement", None)
    r.finish()
    from oracle.core.settlement import parse_settlement  # it builds on this module's readers
    settlement = None if raw_settlement is None else parse_settlement(raw_settlement, decimals, party)
    return Terms(
        agreement=agreement, timezone=tz, currency_symbol=symbol, decimals=decimals,
        monthly_fee=monthly_fee, stale_after=stale, missing_data=missing, maintenance_state=maint,
        exclusion_mode=mode, sites=tuple(sites), objectives=tuple(objectives),
        credit_cap_bps=cap, first_period=first, periods=periods, status_map=status_map,
        settlement=settlement, allow_party_signers=party,
    )


def _status_map(value: Any, field: str) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """{table: {protocol status: state}} overrides, checked against the built-in tables."""
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise TermsError(field, "expected {table: {protocol status: state}}, e.g. {ocpp16: {SuspendedEVSE: faulted}}")
    entries = {str(k): {str(s): str(v) for s, v in m.items()} for k, m in value.items()}
    problem = check_overrides(entries, field)
    if problem:
        where, _, why = problem.partition(": ")
        raise TermsError(where, why)
    return tuple((k, tuple(sorted(m.items()))) for k, m in sorted(entries.items()))


# The canonical form lives in oracle.core.canonical; importers keep using these names from here.
from oracle.core.canonical import canonical_bytes, canonical_dict, terms_hash  # noqa: E402

__all__ = ["Objective", "Site", "Terms", "TermsError", "canonical_bytes", "canonical_dict", "load_terms",
           "parse_terms", "parse_terms_bytes", "terms_hash"]
