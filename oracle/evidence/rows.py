"""Evidence row by row, for input that arrives a row at a time (the node's ingest of files and
HTTP batches, protocol telemetry): the one CSV/JSONL row reader and the one row validator.
The loader of frozen evidence (`oracle.evidence.load`) checks whole columns at once for events,
and uses this validator for the other kinds, so a row is judged by the same rules and in the
same words wherever it comes in."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from oracle.core.terms import Terms
from oracle.evidence.csv import CsvProblem, csv_rows, parse_ts_text
from oracle.evidence.schema import STATES


class RowReject(Exception):
    """A row that cannot be used: the field (or `(row)`) and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


def read_rows(path: Path, data: bytes) -> Iterator[tuple[int, dict[str, Any] | RowReject]]:
    """(line, row) pairs; a row that cannot even be parsed comes as a RowReject."""
    text = data.decode("utf-8-sig", errors="replace")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for i, record in enumerate(text.splitlines(), start=1):
            if not record.strip():
                continue
            try:
                obj = json.loads(record)
            except json.JSONDecodeError as exc:
                yield i, RowReject("(row)", f"not valid JSON: {exc.msg} at column {exc.colno}")
                continue
            yield i, obj if isinstance(obj, dict) else RowReject("(row)", "not a JSON object")
        return
    header, records = csv_rows(text)
    for line, cells in records:
        if isinstance(cells, CsvProblem):
            yield line, RowReject("(row)", cells.message)
        elif any(c.strip() for c in cells):
            yield line, dict(zip(header or [], cells, strict=True))


# ------------------------------------------------------------------ validation


def text_cell(row: dict[str, Any], name: str, required: bool = True) -> str:
    v = row.get(name)
    text = "" if v is None else str(v).strip()
    if required and not text:
        raise RowReject(name, "is missing or empty")
    return text


def ts_cell(row: dict[str, Any], name: str, required: bool = True) -> int | None:
    text = text_cell(row, name, required)
    if not text:
        return None
    v = parse_ts_text(text)
    if v is None:
        raise RowReject(name, f"{text!r} is not an ISO-8601 instant with offset (e.g. 2026-10-01T08:00:00Z)")
    return v


class RowValidator:
    """Checks one row of a kind against the terms and the devices known so far."""

    def __init__(self, terms: Terms, known_devices: set[str]) -> None:
        self.sites = {s.id for s in terms.sites}
        self.severities = {sev for o in terms.objectives for sev, _ in o.targets}
        self.devices = known_devices

    def devices_row(self, row: dict[str, Any]) -> dict[str, Any]:
        did, sid = text_cell(row, "device_id"), text_cell(row, "site_id")
        if sid not in self.sites:
            raise RowReject("site_id", f"unknown site {sid!r}; the terms define {', '.join(sorted(self.sites))}")
        w = text_cell(row, "weight", required=False) or "1"
        if not (w.isascii() and w.isdigit()) or int(w) < 1:  # "²".isdigit(), but int("²") fails
            raise RowReject("weight", f"{w!r} is not a positive integer")
        dep, ret = ts_cell(row, "deployed_at"), ts_cell(row, "retired_at", required=False)
        if ret is not None and dep is not None and ret <= dep:
            raise RowReject("retired_at", "must be after deployed_at")
        return {"device_id": did, "site_id": sid, "weight": int(w), "deployed_at": dep, "retired_at": ret}

    def events_row(self, row: dict[str, Any]) -> dict[str, Any]:
        ts, did, state = ts_cell(row, "ts"), text_cell(row, "device_id"), text_cell(row, "state")
        if state not in STATES:
            raise RowReject("state", f"{state!r} is not one of {', '.join(STATES)}")
        if did not in self.devices:
            raise RowReject("device_id", f"unknown device {did!r} (not in the inventory yet)")
        return {"ts": ts, "device_id": did, "state": state}

    def exclusions_row(self, row: dict[str, Any]) -> dict[str, Any]:
        s, e = ts_cell(row, "start"), ts_cell(row, "end")
        scope = text_cell(row, "scope")
        kind, _, target = scope.partition(":")
        if scope != "*" and not (kind == "site" and target in self.sites) \
                and not (kind == "device" and target in self.devices):
            what = {"site": f"unknown site {target!r}", "device": f"unknown device {target!r}"}
            raise RowReject("scope", what.get(kind, f"{scope!r} is not '*', 'site:<id>' or 'device:<id>'"))
        assert s is not None and e is not None
        if e <= s:
            raise RowReject("end", "must be after start")
        return {"start_ts": s, "end_ts": e, "scope": scope, "reason": text_cell(row, "reason", required=False)}

    def tickets_row(self, row: dict[str, Any]) -> dict[str, Any]:
        tid, sid, sev = text_cell(row, "ticket_id"), text_cell(row, "site_id"), text_cell(row, "severity")
        if sid not in self.sites:
            raise RowReject("site_id", f"unknown site {sid!r}")
        if self.severities and sev not in self.severities:
            raise RowReject("severity", f"{sev!r} has no target in the terms ({', '.join(sorted(self.severities))})")
        opened = ts_cell(row, "opened_at")
        out = {"ticket_id": tid, "site_id": sid, "severity": sev, "opened_at": opened}
        for name in ("responded_at", "resolved_at"):
            v = ts_cell(row, name, required=False)
            if v is not None and opened is not None and v < opened:
                raise RowReject(name, "is before opened_at")
            out[name] = v
        return out
