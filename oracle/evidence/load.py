"""Evidence loading: read and validate the CSV files of an evidence folder (or a bundle's
members) into columnar arrays (devices, events sorted by device and time, exclusions, tickets)
for the KPI engine. Freezing a period's evidence is `oracle.evidence.bundle`.

Every problem is reported as an EvidenceError naming file, line and field; all problems of
a file are gathered (up to a limit) before raising."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from oracle.core.terms import Terms
from oracle.evidence.csv import CsvProblems, MemFile, RawCsv, Source, read_raw, source_size
from oracle.evidence.csv_fast import FAST_MIN_BYTES, read_fast
from oracle.evidence.rows import RowReject, RowValidator
from oracle.evidence.schema import (
    DEVICES,
    EVENTS,
    EXCLUSIONS,
    NO_END,
    REQUIRED,
    STATES,
    TICKETS,
)

I64 = NDArray[np.int64]

MAX_REPORTED = 20


class EvidenceError(ValueError):
    """An evidence row the engine cannot use: `file`, 1-based `line` (the header is line 1),
    `field` (column name) and what is wrong."""

    def __init__(self, file: str, line: int, field: str, message: str) -> None:
        self.file, self.line, self.field, self.message = file, line, field, message
        super().__init__(f"{file}:{line}: {field}: {message}")


class InvalidEvidence(EvidenceError):
    """Several evidence errors; behaves as the first one, `errors` holds them all."""

    def __init__(self, errors: list[EvidenceError]) -> None:
        first = errors[0]
        super().__init__(first.file, first.line, first.field, first.message)
        self.errors = errors

    def __str__(self) -> str:
        shown = [f"{e.file}:{e.line}: {e.field}: {e.message}" for e in self.errors[:MAX_REPORTED]]
        more = len(self.errors) - len(shown)
        return "\n".join(shown + ([f"... and {more} more"] if more > 0 else []))


@dataclass(frozen=True)
class Exclusion:
    start: int
    end: int
    scope: str  # "*", "site:<id>" or "device:<id>"
    reason: str
    line: int

    @property
    def kind(self) -> str:
        return self.scope.split(":", 1)[0]

    @property
    def target(self) -> str:
        return self.scope.split(":", 1)[1] if ":" in self.scope else ""


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    site_id: str
    severity: str
    opened: int
    responded: int | None
    resolved: int | None
    line: int


@dataclass(frozen=True, eq=False)
class Evidence:
    """Validated evidence. Devices are sorted by id; events by (device, ts), deduplicated."""

    device_ids: tuple[str, ...]
    device_site: I64  # index into terms.sites
    device_weight: I64
    deployed: I64
    retired: I64  # NO_END when still deployed
    ev_device: I64
    ev_ts: I64
    ev_state: NDArray[np.int8]
    exclusions: tuple[Exclusion, ...] = ()
    tickets: tuple[Ticket, ...] = ()

    @property
    def n_devices(self) -> int:
        return len(self.device_ids)


class _Errors:
    def __init__(self) -> None:
        self.items: list[EvidenceError] = []

    def add(self, file: str, line: int, field: str, message: str) -> None:
        self.items.append(EvidenceError(file, line, field, message))

    def check(self) -> None:
        if self.items:
            self.items.sort(key=lambda e: (e.file, e.line))
            raise InvalidEvidence(self.items)


def _read(path: Source, required: list[str], errors: _Errors) -> RawCsv | None:
    try:
        return read_raw(path, required)
    except CsvProblems as exc:
        for p in exc.problems:
            errors.add(path.name, p.line, p.field, p.message)
        return None
    except OSError as exc:
        errors.add(path.name, 0, "(file)", f"cannot read: {exc.strerror}")
        return None


def _records(raw: RawCsv) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, {column: text}) of every row, for the row validator."""
    cols = {c: raw.text(raw.col(c)) for c in raw.header}
    for i, line in enumerate(raw.lines.tolist()):
        yield line, {c: v[i] for c, v in cols.items()}


def load_evidence(directory: str | Path | Mapping[str, bytes], terms: Terms) -> Evidence:
    """Read and validate evidence against the terms: a folder of the CSV files, or the files'
    bytes by name (a bundle's members, an export). Raises EvidenceError."""
    if isinstance(directory, Mapping):
        held: dict[str, Source] = {name: MemFile(name, data) for name, data in directory.items()}
        where = "the evidence given"

        def file_of(name: str) -> Source | None:
            return held.get(name)
    else:
        d = Path(directory)
        if not d.is_dir():
            raise EvidenceError(str(d), 0, "(folder)", "evidence folder does not exist")
        where = str(d)

        def file_of(name: str) -> Source | None:
            return d / name if (d / name).is_file() else None
    found = {name: file_of(name) for name in (DEVICES, EVENTS, EXCLUSIONS, TICKETS)}
    errors = _Errors()
    for name in (DEVICES, EVENTS):
        if found[name] is None:
            errors.add(name, 0, "(file)", f"required file is missing from {where}")
    errors.check()
    devices_file, events_file = found[DEVICES], found[EVENTS]
    assert devices_file is not None and events_file is not None
    devices = _load_devices(devices_file, terms, errors)
    errors.check()
    assert devices is not None
    ids, site, weight, dep, ret = devices
    ev = _load_events(events_file, ids, errors)
    exclusions_file, tickets_file = found[EXCLUSIONS], found[TICKETS]
    exclusions = _load_exclusions(exclusions_file, terms, set(ids), errors) if exclusions_file is not None else ()
    tickets = _load_tickets(tickets_file, terms, errors) if tickets_file is not None else ()
    errors.check()
    assert ev is not None
    return Evidence(ids, site, weight, dep, ret, ev[0], ev[1], ev[2], exclusions, tickets)


def _load_devices(path: Source, terms: Terms, errors: _Errors) -> tuple[tuple[str, ...], I64, I64, I64, I64] | None:
    f = path.name
    raw = _read(path, list(REQUIRED["devices"]), errors)
    if raw is None:
        return None
    sites = {s.id: i for i, s in enumerate(terms.sites)}
    check = RowValidator(terms, set())
    rows: dict[str, tuple[int, int, int, int, int]] = {}
    for line, row in _records(raw):
        did = row["device_id"].strip()
        if did in rows:
            errors.add(f, line, "device_id", f"duplicate device {did!r} (first on line {rows[did][4]})")
            continue
        try:
            d = check.devices_row(row)
        except RowReject as rej:
            errors.add(f, line, rej.field, rej.reason)
            continue
        ret = d["retired_at"]
        rows[did] = (sites[d["site_id"]], d["weight"], d["deployed_at"], NO_END if ret is None else ret, line)
    ids = tuple(sorted(rows))
    arr = np.array([rows[i][:4] for i in ids], dtype=np.int64).reshape(len(ids), 4)
    return ids, arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(), arr[:, 3].copy()


def _load_events(path: Source, device_ids: tuple[str, ...], errors: _Errors,
                 fast: bool = True) -> tuple[I64, I64, NDArray[np.int8]] | None:
    f = path.name
    # Large plain files in the usual forms take polars' reader; anything it does not vouch
    # for (and any error, which needs line numbers) takes the exact reader below.
    cols = read_fast(path, {"device_id": device_ids, "state": STATES}, ["ts"]) \
        if fast and source_size(path) >= FAST_MIN_BYTES else None
    if cols is not None:
        dev, state, ts = cols["device_id"], cols["state"], cols["ts"]
        out = _sort_events(dev, ts, state, device_ids)
        return _load_events(path, device_ids, errors, fast=False) if out is None else out
    raw = _read(path, list(REQUIRED["events"]), errors)
    if raw is None:
        return None
    dev = raw.factorize(raw.col("device_id"), list(device_ids))
    state = raw.factorize(raw.col("state"), list(STATES))
    ts, bad_ts = raw.timestamps(raw.col("ts"))
    for field, bad, what in (
        ("ts", bad_ts, "is not an ISO-8601 instant with offset (e.g. 2026-10-01T08:00:00Z)"),
        ("device_id", dev < 0, "is not a device listed in devices.csv"),
        ("state", state < 0, f"is not one of {', '.join(STATES)}"),
    ):
        rows = np.flatnonzero(bad)
        if len(rows):
            k = raw.col(field)
            texts = raw.text(k, rows[:MAX_REPORTED])
            for r, t in zip(rows[:MAX_REPORTED].tolist(), texts):
                errors.add(f, int(raw.lines[r]), field, f"{t!r} {what}")
            if len(rows) > MAX_REPORTED:
                errors.add(f, int(raw.lines[rows[MAX_REPORTED]]), field,
                           f"{len(rows) - MAX_REPORTED} more rows like this")
    if errors.items:
        return None
    return _sort_events(dev, ts, state, device_ids, raw, errors)


def _sort_events(dev: I64, ts: I64, state: I64, device_ids: tuple[str, ...], raw: RawCsv | None = None,
                 errors: _Errors | None = None) -> tuple[I64, I64, NDArray[np.int8]] | None:
    """Events sorted by (device, ts) with identical repeats dropped. Two states of a device
    at one instant are reported with their lines (None without `raw`: the caller rereads)."""
    n = len(ts)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8)
    tmin = int(ts.min())
    tbits = max(int(ts.max() - tmin).bit_length(), 1)
    dbits = max(len(device_ids).bit_length(), 1)
    if dbits + tbits + 3 <= 62:
        # one packed int64 key (device | ts - tmin | state), built and sorted in place: the
        # arrays are 10M long, and every temporary costs fresh pages
        key = dev.astype(np.int64, copy=True)
        key <<= tbits + 3
        tmp = ts - tmin
        tmp <<= 3
        key |= tmp
        key |= state
        key.sort()
        s_state = (key & 7).astype(np.int8)
        s_ts = np.right_shift(key, 3, out=tmp)
        s_ts &= (1 << tbits) - 1
        s_ts += tmin
        s_dev = np.right_shift(key, tbits + 3, out=key)
        del tmp, key
    else:  # pragma: no cover - spans of centuries
        order = np.lexsort((state, ts, dev))
        s_dev, s_ts, s_state = dev[order], ts[order], state[order].astype(np.int8)
    same_instant = s_dev[1:] == s_dev[:-1]
    same_instant &= s_ts[1:] == s_ts[:-1]
    if not same_instant.any():
        return s_dev, s_ts, s_state
    conflict = np.flatnonzero(same_instant & (s_state[1:] != s_state[:-1]))
    if len(conflict):
        if raw is None or errors is None:
            return None
        for c in conflict[:MAX_REPORTED].tolist():
            d_, t_ = s_dev[c], s_ts[c]
            rows = np.flatnonzero((dev == d_) & (ts == t_))
            lines = [int(raw.lines[r]) for r in rows]
            states = sorted({STATES[int(state[r])] for r in rows})
            errors.add(raw.file, lines[-1], "state",
                       f"device {device_ids[d_]!r} has different states ({', '.join(states)}) at the same instant "
                       f"on lines {', '.join(map(str, lines))}")
        return None
    keep = np.concatenate([[True], ~same_instant])  # identical repeated rows count once
    return s_dev[keep], s_ts[keep], s_state[keep]


def _load_exclusions(path: Source, terms: Terms, device_ids: set[str], errors: _Errors) -> tuple[Exclusion, ...]:
    f = path.name
    raw = _read(path, list(REQUIRED["exclusions"]), errors)
    if raw is None:
        return ()
    check = RowValidator(terms, device_ids)
    out = []
    for line, row in _records(raw):
        try:
            x = check.exclusions_row(row)
        except RowReject as rej:
            errors.add(f, line, rej.field, rej.reason)
            continue
        out.append(Exclusion(x["start_ts"], x["end_ts"], x["scope"], x["reason"], line))
    return tuple(out)


def _load_tickets(path: Source, terms: Terms, errors: _Errors) -> tuple[Ticket, ...]:
    f = path.name
    cols = ["ticket_id", "site_id", "severity", "opened_at", "responded_at", "resolved_at"]
    raw = _read(path, cols, errors)
    if raw is None:
        return ()
    check = RowValidator(terms, set())
    seen: dict[str, int] = {}
    out = []
    for line, row in _records(raw):
        tid = row["ticket_id"].strip()
        if tid in seen:
            errors.add(f, line, "ticket_id", f"duplicate ticket {tid!r} (first on line {seen[tid]})")
            continue
        try:
            k = check.tickets_row(row)
        except RowReject as rej:
            errors.add(f, line, rej.field, rej.reason)
            continue
        seen[tid] = line
        out.append(Ticket(tid, k["site_id"], k["severity"], k["opened_at"], k["responded_at"], k["resolved_at"], line))
    return tuple(out)


def window_events(ev: Evidence, w0: int, w1: int) -> tuple[I64, I64, NDArray[np.int8]]:
    """The events a window [w0, w1) uses, as (device, ts, state) arrays in (device, ts) order:
    those inside it, plus each device's last event before w0 (it sets the opening state).
    Each device's events are a sorted run, so its window is found by two binary searches and
    copied as a slice: no full-length mask or temporaries (the arrays are often tens of
    millions long)."""
    d, t, s = ev.ev_device, ev.ev_ts, ev.ev_state
    if len(t) == 0:
        return d[:0], t[:0], s[:0]
    first = np.searchsorted(d, np.arange(ev.n_devices + 1)).tolist()
    runs: list[tuple[int, int]] = []
    for b, e in zip(first[:-1], first[1:]):
        if b == e:
            continue
        run = t[b:e]
        lo = b + int(np.searchsorted(run, w0))
        hi = b + int(np.searchsorted(run, w1))
        lo = max(lo - 1, b)  # the last event before w0 sets the opening state
        if lo < hi:
            if runs and runs[-1][1] == lo:
                runs[-1] = (runs[-1][0], hi)
            else:
                runs.append((lo, hi))
    if len(runs) == 1:
        a, b = runs[0]
        return d[a:b], t[a:b], s[a:b]
    return tuple(np.concatenate([x[a:b] for a, b in runs]) if runs else x[:0]  # type: ignore[return-value]
                 for x in (d, t, s))
