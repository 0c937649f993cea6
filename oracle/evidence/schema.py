"""The evidence format, once: the four kinds of rows, their files, columns and required columns,
and the device states with their codes (defined in `oracle.core.states`, which the terms share).
The reader (`oracle.evidence.csv`), the loader
(`oracle.evidence.load`), the node's ingest and export (`oracle.store`) and the simulator all
take these names from here; docs/terms.md describes the same format in prose."""
from __future__ import annotations

from typing import Final

from oracle.core.states import AVAILABLE, FAULTED, IN_USE, OFFLINE, STATES, UNAVAILABLE, UNKNOWN

__all__ = ["AVAILABLE", "COLUMNS", "DEVICES", "EVENTS", "EXCLUSIONS", "FAULTED", "FILE_OF", "IN_USE", "KINDS",
           "NO_END", "OFFLINE", "REQUIRED", "STATES", "SUFFIXES", "TICKETS", "UNAVAILABLE", "UNKNOWN"]

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
