"""Protocol statuses to evidence states: the built-in tables (`ocpp16`, `ocpp201`, `ocpi221`) and
the terms' overrides (`telemetry.status_map` in docs/terms.md).

The terms name the mapping because it decides what counts as up: a charge point that reports
OCPP 1.6 `SuspendedEVSE` is `in_use` (the station chose not to deliver, e.g. smart charging) by
default; a stricter agreement may make it `faulted`. Regulatory KPIs read the same states:
`unknown` (OCPI UNKNOWN, BLOCKED) is PCPR's "ineligible for measurement" (reg 7(3)(b)) and
`unavailable` counts against a charger there whatever `maintenance_state` says (docs/terms.md §4.2)."""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from oracle.core.states import STATES

# OCPP 1.6 StatusNotification.status (ChargePointStatus), per connector.
OCPP16: Final[Mapping[str, str]] = MappingProxyType({
    "Available": "available", "Preparing": "in_use", "Charging": "in_use", "SuspendedEVSE": "in_use",
    "SuspendedEV": "in_use", "Finishing": "in_use", "Reserved": "in_use", "Unavailable": "unavailable",
    "Faulted": "faulted",
})
# OCPP 2.0.1 StatusNotificationRequest.connectorStatus (ConnectorStatusEnumType), per EVSE connector.
OCPP201: Final[Mapping[str, str]] = MappingProxyType({
    "Available": "available", "Occupied": "in_use", "Reserved": "in_use", "Unavailable": "unavailable",
    "Faulted": "faulted",
})
# OCPI 2.2.1 EVSE.status (Status enum, Locations module section 8.4.22).
OCPI221: Final[Mapping[str, str]] = MappingProxyType({
    "AVAILABLE": "available", "CHARGING": "in_use", "RESERVED": "in_use", "BLOCKED": "unknown",
    "INOPERATIVE": "unavailable", "OUTOFORDER": "faulted", "PLANNED": "unknown", "REMOVED": "unknown",
    "UNKNOWN": "unknown",
})
BUILT_IN: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {"ocpp16": OCPP16, "ocpp201": OCPP201, "ocpi221": OCPI221})


class UnknownStatus(ValueError):
    """A protocol status that the table in force does not map (names the table and the status)."""

    def __init__(self, table: str, status: str) -> None:
        self.table, self.status = table, status
        known = ", ".join(BUILT_IN[table]) if table in BUILT_IN else ""
        super().__init__(f"{table}: status {status!r} is not mapped (known: {known})")


def check_overrides(overrides: Mapping[str, Mapping[str, str]], field: str) -> str | None:
    """None when `overrides` ({table: {status: state}}) is valid, else why (naming the key)."""
    for table, entries in overrides.items():
        if table not in BUILT_IN:
            return f"{field}.{table}: unknown table (built-in: {', '.join(BUILT_IN)})"
        for status, state in entries.items():
            if status not in BUILT_IN[table]:
                return f"{field}.{table}.{status}: not a {table} status ({', '.join(BUILT_IN[table])})"
            if state not in STATES:
                return f"{field}.{table}.{status}: {state!r} is not one of {', '.join(STATES)}"
    return None


def table_in_force(table: str, overrides: Mapping[str, Mapping[str, str]] | None = None) -> Mapping[str, str]:
    """The built-in `table` with the terms' overrides for it applied."""
    base = dict(BUILT_IN[table])
    base.update((overrides or {}).get(table, {}))
    return MappingProxyType(base)


def state_of(table: Mapping[str, str], name: str, status: str) -> str:
    """The evidence state of a protocol `status` under `table` (named `name` in errors)."""
    try:
        return table[status]
    except KeyError:
        raise UnknownStatus(name, status) from None


def tables_of(status_map: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]) -> dict[str, Mapping[str, str]]:
    """Every built-in table with the terms' overrides (`Terms.status_map`) applied."""
    overrides = {k: dict(m) for k, m in status_map}
    return {name: table_in_force(name, overrides) for name in BUILT_IN}
