"""The API's service layer: one `ApiContext` per app holding the settings, the adapters to the oracle
(chain view, terms registry, evidence store) and the API keys, with the operations the routes call
(routes hold no logic). It reaches the oracle only through `api.adapters`."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from eth_utils.address import to_checksum_address
from fastapi import HTTPException
from sqlalchemy.engine import Engine

from .adapters import engine as kpi
from .adapters.chain import SCOPES, AgreementState, ChainView
from .adapters.evidence import Evidence, EvidenceStore, IngestResult, connect, ping
from .adapters.terms import (
    Registry,
    Terms,
    canonical_dict,
    evidence_start,
    iso_utc,
    label_of,
    parse_terms,
    summary,
    terms_hash,
)
from .auth import ApiKeys, Principal, audit_metadata
from .errors import Conflict, Forbidden, http_error
from .models import (
    AgreementDetail,
    AgreementSummary,
    Amount,
    Burn,
    CreateAgreement,
    Created,
    Forecast,
    IngestOutcome,
    Payout,
    Readiness,
    ReportOut,
    SettledPeriod,
    Status,
    TermsResult,
)
from .settings import ApiSettings

Compute = Callable[[Terms, Evidence, str, int], Any]  # (terms, evidence, label, as_of) -> cached value


class ApiContext:
    def __init__(self, settings: ApiSettings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or connect(settings.db_url, audit_metadata)
        self.chain = ChainView(settings.rpc_url, factories=settings.factories, from_block=settings.from_block,
                               block_poll_s=settings.block_poll_s, timeout_s=settings.rpc_timeout_s)
        self.registry = Registry(settings.terms_store, settings.oracle_config)
        self.store = EvidenceStore(self.engine, self.registry, settings.bundle_store, poll_s=settings.block_poll_s)
        self.keys = ApiKeys.from_file(settings.keys_file)
        self._measured: dict[Any, Any] = {}
        self._flights: dict[Any, threading.Lock] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ access

    def agreement(self, address: str, principal: Principal) -> AgreementState:
        """The agreement if the caller may read it (UnknownAgreement / Forbidden otherwise)."""
        state = self.chain.agreement(address)
        if not principal.may_read(state.vendor, state.customer):
            raise Forbidden(f"key {principal.key_id!r} ({principal.role}) may not read agreement {state.address}")
        return state

    def writable(self, address: str, principal: Principal) -> AgreementState:
        state = self.chain.agreement(address)
        if not principal.may_write(state.vendor):
            raise Forbidden(f"key {principal.key_id!r} ({principal.role}) may not write to agreement "
                            f"{state.address}: only its vendor {state.vendor} may")
        return state

    def list_agreements(self, principal: Principal, vendor: str | None, customer: str | None) -> list[AgreementSummary]:
        if principal.role == "vendor":
            if vendor is not None and to_checksum_address(vendor) != principal.party:
                return []
            vendor = principal.party
        elif principal.role == "customer":
            if customer is not None and to_checksum_address(customer) != principal.party:
                return []
            customer = principal.party
        return self.chain.list_agreements(vendor, customer)

    def readiness(self) -> Readiness:
        """Whether the chain and the database answer; never raises."""
        chain: dict[str, object] = {"url": self.settings.rpc_url}
        database: dict[str, object] = {"dialect": self.engine.dialect.name}
        try:
            chain |= {"ok": True, "block": self.chain.block(), "chain_id": self.chain.chain_id}
        except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
            code, detail = http_error(exc)
            chain |= {"ok": False, "error": str(detail) if code != 500 else type(exc).__name__}
        try:
            ping(self.engine)
            database["ok"] = True
        except Exception as exc:  # noqa: BLE001
            database |= {"ok": False, "error": type(exc).__name__}
        return Readiness(ready=bool(chain["ok"] and database["ok"]), chain=chain, database=database)

    # ------------------------------------------------------------------ reads

    def _terms(self, state: AgreementState) -> Terms:
        return self.registry.terms(state.address, state.terms_hash)

    def detail(self, state: AgreementState) -> AgreementDetail:
        d = state.asset_decimals
        c = state.config
        terms = self.registry.terms_or_none(state.address, state.terms_hash)
        scope_names = {v: k for k, v in SCOPES.items()}
        return AgreementDetail.model_validate({
            "address": state.address, "chain_id": self.chain.chain_id, "vendor": state.vendor,
            "customer": state.customer,
            "asset": {"address": state.asset, "symbol": state.asset_symbol, "decimals": d},
            "escrow_balance": Amount.of(state.escrow_balance, d), "reserve": Amount.of(state.reserve, d),
            "withdrawable": Amount.of(state.withdrawable, d), "claimable": Amount.of(state.claimable, d),
            "debt": Amount.of(state.debt, d), "next_period": state.next_period, "period_count": state.period_count,
            "oracles": {"oracles": list(c.oracles), "threshold": c.threshold},
            "terms_hash": state.terms_hash, "terms": canonical_dict(terms) if terms else None,
            "key": self.registry.key(state.address),
            "schedule": {
                "monthly_fee": Amount.of(c.monthly_fee, d), "credit_cap_bps": c.credit_cap_bps,
                "site_fees": [Amount.of(f, d) for f in c.site_fees],
                # plain dicts: the schema declares these two lists' items as free-form objects
                "objectives": [{"id": terms.objectives[i].id if terms else None, "scope": scope_names[o.scope],
                                "device_fee": Amount.of(o.device_fee, d).model_dump(),
                                "tiers": [{"below_bps": b, "credit_bps": r} for b, r in o.tiers]}
                               for i, o in enumerate(c.objectives)],
                "periods": [{"period": i, "label": label_of(terms, i), "start": iso_utc(c.period_bounds[i]),
                             "end": iso_utc(c.period_bounds[i + 1]), "settled": i < state.next_period}
                            for i in range(c.period_count)],
                "max_credit_per_period": Amount.of(c.max_credit_per_period(), d)}})

    def _label(self, state: AgreementState, period: int | None) -> str | None:
        return label_of(self.registry.terms_or_none(state.address, state.terms_hash), period)

    def reports(self, state: AgreementState) -> list[ReportOut]:
        d = state.asset_decimals
        return [ReportOut(period=r.period, label=self._label(state, r.period), payload=r.payload,
                          attainments=r.attainments, digest=r.digest, signatures=r.signatures,
                          credit=Amount.of(r.credit, d), tx_hash=r.tx_hash, block=r.block, event=r.event)
                for r in self.chain.reports(state)]

    def payouts(self, state: AgreementState) -> list[Payout]:
        d = state.asset_decimals
        return [Payout(kind=p.kind, event=p.event, period=p.period, label=self._label(state, p.period),
                       amount=Amount.of(p.amount, d), to=p.to, tx_hash=p.tx_hash, block=p.block, log_index=p.log_index)
                for p in self.chain.payouts(state)]

    def settled(self, state: AgreementState) -> list[SettledPeriod]:
        paid: dict[int, int] = {}
        for p in self.chain.payouts(state):
            if p.kind == "paid" and p.period is not None:
                paid[p.period] = paid.get(p.period, 0) + p.amount
        d = state.asset_decimals
        return [SettledPeriod(period=r.period, label=self._label(state, r.period), credit=Amount.of(r.credit, d),
                              paid=Amount.of(paid.get(r.period, 0), d), tx_hash=r.tx_hash, block=r.block)
                for r in self.chain.reports(state)]

    def evidence_bundle(self, state: AgreementState, period: int) -> tuple[str, bytes]:
        """(file name, zip bytes) of a closed period's evidence bundle; 404 when there is none here."""
        if period >= state.period_count:
            raise HTTPException(404, f"agreement {state.address} has periods 0..{state.period_count - 1}")
        root = next((r.payload["evidenceRoot"] for r in self.chain.reports(state) if r.period == period), None)
        bundle = self.store.bundle(state.address, period, root)
        if bundle is None:
            raise HTTPException(404, f"period {period} has no evidence bundle here (not closed yet, or closed by "
                                     "another oracle node)")
        return f"{state.address}-period{period}-{bundle.name[:12]}.zip", bundle.read_bytes()

    # ------------------------------------------------------------------ month to date

    def _measure(self, kind: Hashable, state: AgreementState, as_of: int | None, compute: Compute,
                 history_s: int = 0) -> Any:
        """`compute(terms, evidence, label, as_of)` (month to date, burn series, forecast), cached per
        (kind, period, as_of, block, telemetry version); a miss is computed by one thread while
        concurrent requests for the same key wait for it. The evidence covers the period, and the
        `history_s` before as_of if that starts earlier (the forecast's fit window)."""
        terms = self._terms(state)
        if as_of is None:
            ttl = max(1, self.settings.status_ttl_s)
            as_of = int(time.time()) // ttl * ttl  # rounded so that the cache serves a burst of requests
        period, as_of = kpi.period_as_of(terms, as_of)
        key = (kind, state.address, period.label, as_of, self.chain.block(), self.store.version(state.address))
        with self._lock:
            hit = self._measured.get(key)
            flight = self._flights.setdefault(key[:4], threading.Lock())
        if hit is not None:
            return hit
        with flight:
            with self._lock:
                hit = self._measured.get(key)
            if hit is not None:
                return hit
            w0 = min(period.start, as_of - history_s, evidence_start(terms, period.label))  # longer windows
            evidence = self.store.evidence(state.address, terms, w0, period.end)
            value = compute(terms, evidence, period.label, as_of)
            with self._lock:
                if len(self._measured) > 256:
                    self._measured.clear()
                    self._flights.clear()
                self._measured[key] = value
            return value

    def _decimals(self, state: AgreementState) -> int:
        return state.asset_decimals if state.asset_decimals is not None else self._terms(state).decimals

    def _currency(self, state: AgreementState) -> str:
        return state.asset_symbol or self._terms(state).currency_symbol

    def month_to_date(self, state: AgreementState, as_of: int | None) -> Status:
        """The period's KPIs up to `as_of` (default: now), and the settled periods."""
        s = self._measure("month_to_date", state, as_of, kpi.month_to_date)
        d = self._decimals(state)
        objectives = [o | {"results": [r | {"credit": Amount.of(r["credit"], d)} for r in o["results"]]}
                      for o in s["objectives"]]
        return Status.model_validate(s | {
            "agreement": state.address, "objectives": objectives, "credit_so_far": Amount.of(s["credit_so_far"], d),
            "currency": self._currency(state), "settled": self.settled(state)})

    def burn(self, state: AgreementState, as_of: int | None, sims: int | None = None) -> Burn:
        """The burn series; with `sims`, each subject's forecast band to period end as well."""
        b: dict[str, Any] = self._measure("burn", state, as_of, kpi.burn_series)
        if sims is None:
            return Burn.model_validate(b)
        subjects = [(o["id"], s["subject"]) for o in b["objectives"] for s in o["series"]]
        bands = self._measure(("band", sims), state, as_of, lambda t, e, label, at: kpi.burn_bands(
            t, e, label, at, sims, subjects), history_s=kpi.HISTORY_S)
        return Burn.model_validate(b | {"objectives": [
            o | {"series": [s | {"forecast": bands[o["id"], s["subject"]]} for s in o["series"]]}
            for o in b["objectives"]]})

    def forecast(self, state: AgreementState, as_of: int | None, sims: int) -> Forecast:
        f = self._measure(("forecast", sims), state, as_of,
                          lambda t, e, label, at: kpi.forecast_view(t, e, label, at, sims), history_s=kpi.HISTORY_S)
        d = self._decimals(state)
        objectives = [o | {"results": [r | {"expected_credit": Amount.of(r["expected_credit"], d),
                                             "credit_if_missed": Amount.of(r["credit_if_missed"], d)}
                                       for r in o["results"]]} for o in f["objectives"]]
        priorities = [p | {"expected_credit_saved": Amount.of(p["expected_credit_saved"], d)} for p in f["priorities"]]
        return Forecast.model_validate(f | {"agreement": state.address, "currency": self._currency(state),
                                            "objectives": objectives, "priorities": priorities})

    # ------------------------------------------------------------------ writes

    def register_terms(self, state: AgreementState, text: str) -> TermsResult:
        terms = parse_terms(text)
        if terms_hash(terms) != state.terms_hash:
            raise Conflict(f"these terms hash to {terms_hash(terms)}; agreement {state.address} was made for "
                           f"{state.terms_hash}")
        self.registry.store(text)
        return summary(terms)

    def create(self, principal: Principal, body: CreateAgreement) -> Created:
        if principal.party is None:
            raise Forbidden("only a vendor key may create agreements")
        terms = parse_terms(body.terms)
        factory = body.factory or (self.settings.factories[0] if self.settings.factories else None)
        if factory is None:
            raise Conflict("no factory configured (SLACOMP_API_FACTORIES) and none given")
        created = self.chain.create(terms, vendor=principal.party, keystore=principal.keystore, factory=factory,
                                    customer=body.customer, asset=body.asset, oracles=body.oracles,
                                    threshold=body.threshold)
        self.registry.store(body.terms)
        return Created(address=created.address, vendor=principal.party, customer=created.customer,
                       terms_hash=terms_hash(terms), tx_hash=created.tx_hash, block=created.block,
                       gas_used=created.gas_used)

    def ingest(self, address: str, principal: Principal, kind: str, rows: list[dict[str, Any]],
               errors: list[dict[str, Any]], positions: list[int]) -> IngestOutcome:
        """Ingest a parsed batch: the oracle's per-row problems are
        reported at their position in the batch, beside the rows the parser already refused."""
        state = self.writable(address, principal)
        terms = self._terms(state)
        result = self.store.ingest(state.address, terms, kind, rows, f"http:{principal.key_id}") if rows else None
        return _outcome(kind, len(rows) + len(errors), result, errors, positions)


def _outcome(kind: str, n: int, result: IngestResult | None, errors: list[dict[str, Any]],
             positions: list[int]) -> IngestOutcome:
    problems = [{"row": positions[line - 1] if 0 < line <= len(positions) else line, "field": field,
                 "reason": reason} for line, field, reason in (result.problems if result else [])]
    base: dict[str, Any] = {"accepted": 0, "duplicates": 0, "quarantined": 0, "late": 0, "released": 0,
                            "skipped": False}
    if result is not None:
        base = {k: getattr(result, k) for k in base}
    return IngestOutcome.model_validate(
        {"kind": kind, "rows": n, **base, "errors": sorted(errors + problems, key=lambda e: e["row"])})

