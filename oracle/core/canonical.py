"""The canonical form of agreement terms: the normalised model as sorted-key JSON, and its
keccak, the `termsHash` fixed in every agreement (docs/terms.md §5)."""
from __future__ import annotations

import json
from typing import Any

from eth_utils.crypto import keccak

from oracle.core.calendar import WeekHours
from oracle.core.terms import DAYS, SCHEMA, Objective, Terms


def canonical_dict(terms: Terms) -> dict[str, Any]:
    """The normalised model as plain JSON data (every default filled in)."""

    def hours(h: WeekHours) -> dict[str, list[list[int]]]:
        return {DAYS[d]: [[a, b] for a, b in h[d]] for d in range(7)}

    def objective(o: Objective) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": o.id, "kpi": o.kpi, "scope": o.scope, "target_bps": o.target_bps,
            "credits": [{"below_bps": b, "credit_bps": c} for b, c in o.tiers],
            "device_fee": o.device_fee,
        }
        if o.kpi == "site_availability":
            d["min_available"] = o.min_available
        if o.kpi == "site_max_down":
            d["max_down"] = o.max_down
        if o.kpi.startswith("ticket_"):
            d["targets"] = dict(o.targets)
            d["clock"] = o.clock
        if o.kpi == "pcpr_reliability":
            d["ineligible"] = o.ineligible
        if o.window != "period":  # only when set, so that the hash of terms written before windows is unchanged
            d["window"] = o.window
        return d

    return {
        "schema": SCHEMA,
        "agreement": terms.agreement,
        "timezone": terms.timezone,
        "currency": {"symbol": terms.currency_symbol, "decimals": terms.decimals},
        "monthly_fee": terms.monthly_fee,
        "telemetry": {
            "stale_after": terms.stale_after,
            "missing_data": terms.missing_data,
            "maintenance_state": terms.maintenance_state,
            # only when set, so that the hash of terms written before status maps is unchanged
            **({"status_map": {k: dict(m) for k, m in terms.status_map}} if terms.status_map else {}),
        },
        "exclusion_mode": terms.exclusion_mode,
        "sites": [
            {"id": s.id, "timezone": s.timezone, "business_hours": hours(s.business_hours), "fee": s.fee}
            for s in terms.sites
        ],
        "objectives": [objective(o) for o in terms.objectives],
        "credit_cap_bps": terms.credit_cap_bps,
        "term": {"first_period": terms.first_period, "periods": terms.periods},
        # only when set, so that the hash of terms written before settlement is unchanged
        **({"settlement": terms.settlement.canonical()} if terms.settlement else {}),
        **({"allow_party_signers": True} if terms.allow_party_signers else {}),
    }


def canonical_bytes(terms: Terms) -> bytes:
    """Sorted-key, whitespace-free UTF-8 JSON of the normalised model (docs/terms.md)."""
    return json.dumps(canonical_dict(terms), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def terms_hash(terms: Terms) -> str:
    return "0x" + keccak(canonical_bytes(terms)).hex()
