"""The API's service layer: one `ApiContext` per app holding the settings, the cached chain view,
the oracle link and the keys, with the operations the routes call (routes hold no logic)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy.engine import Engine

from oracle.chain.abi import ChainError, contract, create_agreement
from oracle.chain.config import SCOPES, config_from_terms
from oracle.chain.keystore import load_keystore, read_password
from oracle.core.calendar import iso_utc
from oracle.core.period import period_bounds, period_labels
from oracle.core.terms import Terms, canonical_bytes, canonical_dict, parse_terms, terms_hash
from oracle.evidence.load import Evidence

from . import forecast as fc
from . import status as mtd
from .auth import KeyRing, Principal
from .chain_view import AgreementState, ChainView
from .oracle_link import OracleLink, connect
from .settings import ApiSettings

Compute = Callable[[Terms, Evidence, str, int], Any]  # (terms, evidence, label, as_of) -> cached value


class Forbidden(PermissionError):
    pass


class Conflict(RuntimeError):
    """The request is valid but cannot be served in the current state (409)."""


class Invalid(ValueError):
    """A body field the chain or the engine refused (422 naming the field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def amount(value: int, decimals: int | None) -> dict[str, str | None]:
    if decimals is None:
        return {"raw": str(value), "units": None}
    whole, frac = divmod(value, 10**decimals)
    return {"raw": str(value), "units": f"{whole}.{frac:0{decimals}d}" if decimals else str(whole)}


def terms_summary(terms: Terms) -> dict[str, Any]:
    periods = [{"label": p, "start": iso_utc(s), "end": iso_utc(e)}
               for p in period_labels(terms) for s, e in [period_bounds(terms, p)]]
    return {"agreement": terms.agreement, "terms_hash": terms_hash(terms),
            "canonical": canonical_bytes(terms).decode(), "normalized": canonical_dict(terms), "periods": periods}


class ApiContext:
    def __init__(self, settings: ApiSettings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or connect(settings.db_url)
        self.chain = ChainView(settings.rpc_url, factories=settings.factories, from_block=settings.from_block,
                               block_poll_s=settings.block_poll_s, timeout_s=settings.rpc_timeout_s)
        self.link = OracleLink(self.engine, settings.terms_store, settings.bundle_store, settings.oracle_config,
                               poll_s=settings.block_poll_s)
        self.keys = KeyRing.from_file(settings.keys_file)
        self._status_cache: dict[Any, Any] = {}
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

    def list_agreements(self, principal: Principal, vendor: str | None, customer: str | None) -> list[dict[str, Any]]:
        if principal.role == "vendor":
            if vendor is not None and to_checksum_address(vendor) != principal.party:
                return []
            vendor = principal.party
        elif principal.role == "customer":
            if customer is not None and to_checksum_address(customer) != principal.party:
                return []
            customer = principal.party
        return self.chain.list_agreements(vendor, customer)

    # ------------------------------------------------------------------ reads

    def terms_or_none(self, state: AgreementState) -> Terms | None:
        try:
            return self.link.terms(state.address, state.terms_hash)
        except LookupError:
            return None

    def detail(self, state: AgreementState) -> dict[str, Any]:
        d = state.asset_decimals
        c = state.config
        terms = self.terms_or_none(state)
        labels = period_labels(terms) if terms else [None] * c.period_count
        scope_names = {v: k for k, v in SCOPES.items()}
        return {
            "address": state.address, "chain_id": self.chain.chain_id, "vendor": state.vendor,
            "customer": state.customer,
            "asset": {"address": state.asset, "symbol": state.asset_symbol, "decimals": d},
            "escrow_balance": amount(state.escrow_balance, d), "reserve": amount(state.reserve, d),
            "withdrawable": amount(state.withdrawable, d), "claimable": amount(state.claimable, d),
            "debt": amount(state.debt, d), "next_period": state.next_period, "period_count": state.period_count,
            "oracles": {"oracles": list(c.oracles), "threshold": c.threshold},
            "terms_hash": state.terms_hash, "terms": canonical_dict(terms) if terms else None,
            "key": self.link.key(state.address),
            "schedule": {
                "monthly_fee": amount(c.monthly_fee, d), "credit_cap_bps": c.credit_cap_bps,
                "site_fees": [amount(f, d) for f in c.site_fees],
                "objectives": [{"id": terms.objectives[i].id if terms else None, "scope": scope_names[o.scope],
                                "device_fee": amount(o.device_fee, d),
                                "tiers": [{"below_bps": b, "credit_bps": r} for b, r in o.tiers]}
                               for i, o in enumerate(c.objectives)],
                "periods": [{"period": i, "label": labels[i], "start": iso_utc(c.period_bounds[i]),
                             "end": iso_utc(c.period_bounds[i + 1]), "settled": i < state.next_period}
                            for i in range(c.period_count)],
                "max_credit_per_period": amount(c.max_credit_per_period(), d)}}

    def _label(self, state: AgreementState, period: int | None) -> str | None:
        terms = self.terms_or_none(state)
        if terms is None or period is None or not 0 <= period < terms.periods:
            return None
        return period_labels(terms)[period]

    def reports(self, state: AgreementState) -> list[dict[str, Any]]:
        return [r | {"label": self._label(state, r["period"]), "credit": amount(r["credit"], state.asset_decimals)}
                for r in self.chain.reports(state)]

    def payouts(self, state: AgreementState) -> list[dict[str, Any]]:
        return [p | {"label": self._label(state, p["period"]), "amount": amount(p["amount"], state.asset_decimals)}
                for p in self.chain.payouts(state)]

    def settled(self, state: AgreementState) -> list[dict[str, Any]]:
        paid: dict[int, int] = {}
        for p in self.chain.payouts(state):
            if p["kind"] == "paid" and p["period"] is not None:
                paid[p["period"]] = paid.get(p["period"], 0) + p["amount"]
        d = state.asset_decimals
        return [{"period": r["period"], "label": self._label(state, r["period"]), "credit": amount(r["credit"], d),
                 "paid": amount(paid.get(r["period"], 0), d), "tx_hash": r["tx_hash"], "block": r["block"]}
                for r in self.chain.reports(state)]

    # ------------------------------------------------------------------ month to date

    def _period_for(self, terms: Terms, as_of: int | None) -> tuple[str, int]:
        if as_of is None:
            ttl = max(1, self.settings.status_ttl_s)
            as_of = int(time.time()) // ttl * ttl  # rounded so that the cache serves a burst of requests
        labels = period_labels(terms)
        first_start = period_bounds(terms, labels[0])[0]
        if as_of <= first_start:
            raise Conflict(f"the term starts at {iso_utc(first_start)}; as_of {iso_utc(as_of)} is before it")
        for label in labels:
            start, end = period_bounds(terms, label)
            if start < as_of <= end:
                return label, as_of
        return labels[-1], period_bounds(terms, labels[-1])[1]  # after the term: its last period, complete

    def _mtd(self, kind: Hashable, state: AgreementState, as_of: int | None, compute: Compute,
             history_s: int = 0) -> Any:
        """`compute(terms, evidence, label, as_of)` (status, burn series, forecast), cached per
        (kind, period, as_of, block, telemetry version); a miss is computed by one thread while
        concurrent requests for the same key wait for it. The evidence covers the period, and the
        `history_s` before as_of if that starts earlier (the forecast's fit window)."""
        terms = self.link.terms(state.address, state.terms_hash)
        label, as_of = self._period_for(terms, as_of)
        key = (kind, state.address, label, as_of, self.chain.block(), self.link.version(state.address))
        with self._lock:
            hit = self._status_cache.get(key)
            flight = self._flights.setdefault(key[:4], threading.Lock())
        if hit is not None:
            return hit
        with flight:
            with self._lock:
                hit = self._status_cache.get(key)
            if hit is not None:
                return hit
            start, end = period_bounds(terms, label)
            evidence = self.link.evidence(state.address, terms, min(start, as_of - history_s), end)
            value = compute(terms, evidence, label, as_of)
            with self._lock:
                if len(self._status_cache) > 256:
                    self._status_cache.clear()
                    self._flights.clear()
                self._status_cache[key] = value
            return value

    def _decimals(self, state: AgreementState) -> int:
        terms = self.link.terms(state.address, state.terms_hash)
        return state.asset_decimals if state.asset_decimals is not None else terms.decimals

    def _currency(self, state: AgreementState) -> str:
        return state.asset_symbol or self.link.terms(state.address, state.terms_hash).currency_symbol

    def status(self, state: AgreementState, as_of: int | None) -> dict[str, Any]:
        s = self._mtd("status", state, as_of, mtd.month_to_date)
        d = self._decimals(state)
        objectives = [o | {"results": [r | {"credit": amount(r["credit"], d)} for r in o["results"]]}
                      for o in s["objectives"]]
        return s | {"agreement": state.address, "objectives": objectives, "credit_so_far": amount(s["credit_so_far"], d),
                    "currency": self._currency(state), "settled": self.settled(state)}

    def burn(self, state: AgreementState, as_of: int | None, sims: int | None = None) -> dict[str, Any]:
        """The burn series; with `sims`, each subject's forecast band to period end as well."""
        b: dict[str, Any] = self._mtd("burn", state, as_of, mtd.burn_series)
        if sims is None:
            return b
        subjects = [(o["id"], s["subject"]) for o in b["objectives"] for s in o["series"]]
        bands = self._mtd(("band", sims), state, as_of, lambda t, e, label, at: fc.burn_bands(
            t, e, label, at, sims, subjects), history_s=int(fc.HISTORY_DAYS * 86_400))
        return b | {"objectives": [o | {"series": [s | {"forecast": bands[o["id"], s["subject"]]} for s in o["series"]]}
                                   for o in b["objectives"]]}

    def forecast(self, state: AgreementState, as_of: int | None, sims: int) -> dict[str, Any]:
        f = self._mtd(("forecast", sims), state, as_of, lambda t, e, label, at: fc.forecast_view(t, e, label, at, sims),
                      history_s=int(fc.HISTORY_DAYS * 86_400))
        d = self._decimals(state)
        objectives = [o | {"results": [r | {"expected_credit": amount(r["expected_credit"], d),
                                             "credit_if_missed": amount(r["credit_if_missed"], d)}
                                       for r in o["results"]]} for o in f["objectives"]]
        priorities = [p | {"expected_credit_saved": amount(p["expected_credit_saved"], d)} for p in f["priorities"]]
        return f | {"agreement": state.address, "currency": self._currency(state), "objectives": objectives,
                    "priorities": priorities}

    # ------------------------------------------------------------------ writes

    def register_terms(self, state: AgreementState, text: str) -> dict[str, Any]:
        terms = parse_terms(text)
        if terms_hash(terms) != state.terms_hash:
            raise Conflict(f"these terms hash to {terms_hash(terms)}; agreement {state.address} was made for "
                           f"{state.terms_hash}")
        self.link.store_terms(text)
        return terms_summary(terms)

    def create(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        if principal.party is None:
            raise Forbidden("only a vendor key may create agreements")
        terms = parse_terms(body["terms"])
        factory = body.get("factory") or (self.settings.factories[0] if self.settings.factories else None)
        if factory is None:
            raise Conflict("no factory configured (SLACOMP_API_FACTORIES) and none given")
        config = config_from_terms(terms, customer=body["customer"], asset=body["asset"], oracles=body["oracles"],
                                   threshold=body["threshold"])
        sender: Any = principal.party
        if principal.keystore is not None:
            sender = load_keystore(Path(principal.keystore), read_password("SLACOMP_KEYSTORE_PASSWORD", None))
        w3 = self.chain.w3
        fc = contract(w3, "AgreementFactory", factory)
        try:
            agreement, receipt = self.chain._rpc("createAgreement", lambda: create_agreement(w3, fc, sender, config))
        except ChainError as exc:
            field = "threshold" if "OracleSet" in exc.error else "terms"
            raise Invalid(field, f"the factory refused the agreement: {exc.error}") from None
        self.link.store_terms(body["terms"])
        self.chain.invalidate()
        return {"address": agreement.address, "vendor": principal.party, "customer": config.customer,
                "terms_hash": terms_hash(terms), "tx_hash": "0x" + bytes(receipt["transactionHash"]).hex(),
                "block": int(receipt["blockNumber"]), "gas_used": int(receipt["gasUsed"])}


