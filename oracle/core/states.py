"""Device states, in code order: the code of a state is its index (the database, the evidence
commitment and the engine use codes). The terms refer to them (`maintenance_state`,
`missing_data`, status maps) and the evidence format writes them (`oracle.evidence.schema`).
`unknown` is a device saying it cannot tell (e.g. OCPI UNKNOWN): the engine treats it exactly
like no fresh event (the terms' `missing_data`); the regulatory KPIs class it as NEVI outage and
as PCPR "ineligible for measurement" (docs/terms.md §4.2)."""
from __future__ import annotations

from typing import Final

STATES: Final = ("available", "in_use", "faulted", "unavailable", "offline", "unknown")
AVAILABLE, IN_USE, FAULTED, UNAVAILABLE, OFFLINE, UNKNOWN = range(6)
