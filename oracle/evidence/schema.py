"""The evidence format, once: the four kinds of rows, their files, columns and required columns,
and the device states with their codes. The reader (`oracle.evidence.csv`), the loader
(`oracle.evidence.load`), the node's ingest and export (`oracle.store`) and the simulator all
take these names from here; docs/terms.md describes the same format in prose."""
from __future__ import annotations

from typing import Final

# Device states as written in events (CSV `state`, JSONL, mapped protocol statuses), in code order:
# the code of a state is its index (the database, the commitment and the engine use codes).
# `unknown` is a device saying it cannot tell (e.g. OCPI UNKNOWN): the engine treats it exactly
# like no fresh event (the terms' `missing_data`), and the regulatory KPIs do not count it.
STATES: Final = ("available", "in_use", "faulted", "unavailable", "offline", "unknown")
AVAILABLE, IN_USE, FAULTED, UNAVAILABLE, OFFLINE, UNKNOWN = range(6)

DEVICES, EVENTS, EXCLUSIONS, TICKETS = "devices.csv", "events.csv", "exclusions.csv", "tickets.csv"
KINDS: Final = ("devices", "events", "exclusions", "tickets")
FILE_OF: Final = {"devices": DEVICES, "events": EVENTS, "exclusions": EXCLUSIONS, "tickets": TICKETS}
COLUMNS: Final = {
    "devices": ("device_id", "site_id", "weight", "deployed_at", "retired_at"),
    "events": ("ts", "device_id", "state"),
    "exclusions": ("start", "end", "scope", "reason"),
    "tickets": ("ticket_id", "site_id", "severity", "opened_at", "responded_at", "resolved_at"),
}
REQUIRED: Final = {
    "devices": ("device_id", "site_id", "deployed_at"),
    "events": ("ts", "device_id", "state"),
    "exclusions": ("start", "end", "scope"),
    "tickets": ("ticket_id", "site_id", "severity", "opened_at"),
}
SUFFIXES: Final = (".csv", ".jsonl", ".ndjson")  # what an inbox folder's files may end in
NO_END: Final = 2**62  # retired_at left empty
