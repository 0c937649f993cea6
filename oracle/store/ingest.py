"""Ingest telemetry, inventory, exclusions and tickets into the oracle database, row by row, from
files (CSV or JSONL in the evidence formats of docs/terms.md) or from an HTTP batch.

Every accepted row keeps its source and line; every rejected row goes to the quarantine table
with file, line, field and reason; identical rows are counted as duplicates. Re-ingesting the
same content is a no-op. Rows out: `oracle.store.export`."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Engine

from oracle.core.calendar import iso_utc
from oracle.core.terms import Terms
from oracle.evidence.rows import RowReject, RowValidator, read_rows
from oracle.evidence.schema import (
    KINDS,
    STATES,
    SUFFIXES,
)
from oracle.store.bulk import store_events_bulk
from oracle.store.db import (
    devices,
    events,
    exclusions,
    execute_many,
    fetch_tuples,
    insert_ignore_rows,
    lock_agreements,
    now,
    quarantine,
    sources,
    tickets,
)
from oracle.store.frozen import frozen_before_in

FAST_MIN_BYTES = 64 << 10  # events CSV files from this size try the columnar path first


class IngestError(ValueError):
    """A whole input cannot be ingested (unknown kind, unreadable file); rows never raise this."""


@dataclass
class IngestResult:
    source: str
    kind: str
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    late: int = 0  # rows inside a period that was already closed (quarantined: its bundle is frozen)
    skipped: bool = False  # this exact content was ingested before
    released: int = 0  # quarantined rows of earlier inputs accepted thanks to this one
    problems: list[tuple[int, str, str]] = field(default_factory=list)  # (line, field, reason)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "problems"} | {
            "problems": [{"line": ln, "field": f, "reason": r} for ln, f, r in self.problems[:50]]}


# ------------------------------------------------------------------ reading


def kind_of(path: Path) -> str:
    """`devices.csv`, `events-2026-10.jsonl`, ... -> the kind its name starts with."""
    stem = path.name.lower()
    for kind in KINDS:
        if stem.startswith(kind):
            return kind
    raise IngestError(f"{path.name}: cannot tell the kind from the name (start it with {', '.join(KINDS)})")


# ------------------------------------------------------------------ storing


# fields a later row may fill in (retirement, ticket response/resolution)
_FILLABLE = {"devices": ("retired_at",), "tickets": ("responded_at", "resolved_at")}
_TABLE = {"devices": devices, "events": events, "exclusions": exclusions, "tickets": tickets}


def _device_ids(conn: Connection, agreement: str) -> dict[str, int]:
    """device_id -> devices.id (the key of the agreement's devices in the events table)."""
    return {did: int(i) for did, i in fetch_tuples(conn, _Q_DEVICE_IDS, {"agreement": agreement})}


_STATE_CODE = {s: i for i, s in enumerate(STATES)}


def _events_held(conn: Connection, agreement: str) -> Callable[[int, int], bool]:
    """Whether the agreement holds an event in [lo, hi] (one indexed probe)."""
    return lambda lo, hi: bool(fetch_tuples(conn, _Q_EVENTS_HELD, {"agreement": agreement, "lo": lo, "hi": hi}))


def _events_of(agreement: Any, *where: Any) -> Any:
    """SELECT ts, device_id, state, source_id, line of the agreement's events (through devices)."""
    return select(events.c.ts, devices.c.device_id, events.c.state, events.c.source_id, events.c.line).join(
        devices, devices.c.id == events.c.device).where(devices.c.agreement == agreement, *where)


# The statements of an ingest, built once with bound parameters: building and hashing a fresh
# construct for every statement costs several times what executing a cached one does.
_Q_DEVICE_IDS = select(devices.c.device_id, devices.c.id).where(devices.c.agreement == bindparam("agreement"))
_Q_EVENTS_IN = _events_of(bindparam("agreement"), events.c.ts >= bindparam("lo"), events.c.ts <= bindparam("hi"))
_Q_EVENTS_HELD = _Q_EVENTS_IN.limit(1)
_Q_HELD_ROWS = {kind: select(t).where(t.c.agreement == bindparam("agreement")) for kind, t in (
    ("devices", devices), ("exclusions", exclusions), ("tickets", tickets))}
_Q_SEEN = select(sources.c.id).where(sources.c.agreement == bindparam("agreement"),
                                     sources.c.kind == bindparam("kind"), sources.c.sha256 == bindparam("sha256"))
_Q_NEW_SOURCE = sources.insert().values(
    agreement=bindparam("s_agreement"), kind=bindparam("s_kind"), name=bindparam("s_name"),
    sha256=bindparam("s_sha256"), ingested_at=bindparam("s_at"), accepted=0, duplicates=0, quarantined=0)
_Q_NEW_SOURCE_ID = _Q_NEW_SOURCE.returning(sources.c.id)
_Q_SOURCE_COUNTS = update(sources).where(sources.c.id == bindparam("source")).values(
    accepted=bindparam("n_accepted"), duplicates=bindparam("n_duplicates"), quarantined=bindparam("n_quarantined"))
_Q_QUARANTINE = quarantine.insert().values({c: bindparam(c) for c in (
    "agreement", "kind", "source_id", "file", "line", "field", "reason", "raw", "created_at")})
_Q_OPEN_UNKNOWN_DEVICE = select(quarantine).where(
    quarantine.c.agreement == bindparam("agreement"), quarantine.c.resolved_at.is_(None),
    quarantine.c.reason.like("unknown device%"))
_Q_RESOLVE = update(quarantine).where(quarantine.c.id == bindparam("qid")).values(resolved_at=bindparam("stamp"))
class _Batch:
    """Stores validated rows of one kind, deciding duplicate / update / conflict against what the
    database (and this batch) already holds."""

    def __init__(self, conn: Connection, agreement: str, kind: str, result: IngestResult,
                 frozen_before: int | None) -> None:
        self.conn, self.agreement, self.kind, self.result = conn, agreement, kind, result
        self.frozen_before = frozen_before
        self.new: list[dict[str, Any]] = []
        self.existing: dict[Any, dict[str, Any]] = {}

    def preload(self, recs: list[dict[str, Any]]) -> None:
        if self.kind == "events":
            if not recs:
                return
            lo, hi = min(r["ts"] for r in recs), max(r["ts"] for r in recs)
            for ts, did, state, source_id, line in fetch_tuples(
                    self.conn, _Q_EVENTS_IN, {"agreement": self.agreement, "lo": lo, "hi": hi}):
                self.existing[(did, ts)] = {"ts": ts, "device_id": did, "state": STATES[state],
                                            "source_id": source_id, "line": line}
            return
        names = _TABLE[self.kind].columns.keys()
        for values in fetch_tuples(self.conn, _Q_HELD_ROWS[self.kind], {"agreement": self.agreement}):
            row = dict(zip(names, values))
            self.existing[self._key(row)] = row

    def _key(self, rec: Any) -> Any:
        if self.kind == "devices":
            return rec["device_id"]
        if self.kind == "events":
            return (rec["device_id"], rec["ts"])
        if self.kind == "tickets":
            return rec["ticket_id"]
        return (rec["start_ts"], rec["end_ts"], rec["scope"], rec["reason"])

    def add(self, rec: dict[str, Any], source_id: int, line: int) -> None:
        """Raises RowReject for a conflict with a row already held."""
        key = self._key(rec)
        old = self.existing.get(key)
        if old is None:
            if self.kind == "events" and self.frozen_before is not None and rec["ts"] < self.frozen_before:
                # the period's report and bundle are frozen; storing the row would also shift the
                # opening state of the next period, so it waits for an operator instead
                self.result.late += 1
                raise RowReject("ts", f"falls in a period already closed (ended {iso_utc(self.frozen_before)}); "
                                    "its report and evidence bundle are frozen")
            full = rec | {"source_id": source_id, "line": line}
            self.existing[key] = full
            self.new.append(full)
            self.result.accepted += 1
            return
        fillable = _FILLABLE.get(self.kind, ())
        # an older snapshot that lacks a retirement/response we already hold is not a conflict
        diff = [k for k, v in rec.items() if old[k] != v and not (k in fillable and v is None)]
        if not diff:
            self.result.duplicates += 1
            return
        if self.kind in ("devices", "tickets") and all(k in fillable and old[k] is None for k in diff):
            # inventory retirement / ticket response arriving later: fill in, keep provenance
            changes = {k: rec[k] for k in diff}
            old.update(changes)
            if "id" in old:
                t = _TABLE[self.kind]
                self.conn.execute(update(t).where(t.c.id == old["id"]).values(
                    **changes, source_id=source_id, line=line))
            self.result.accepted += 1
            return
        where = f"source {old['source_id']} line {old['line']}"
        if self.kind == "events":
            raise RowReject("state", f"device {rec['device_id']!r} already has state {old['state']!r} at this "
                                   f"instant ({where})")
        field_ = diff[0]
        raise RowReject(field_, f"conflicts with {self.kind[:-1]} {key!r} held from {where} "
                              f"({field_}: {old[field_]!r} != {rec[field_]!r})")

    def flush(self) -> None:
        if self.kind == "events" and self.new:
            ids = _device_ids(self.conn, self.agreement)
            rows = [{"device": ids[r["device_id"]], "ts": r["ts"], "state": _STATE_CODE[r["state"]],
                     "source_id": r["source_id"], "line": r["line"]} for r in self.new]
        else:
            rows = [r | {"agreement": self.agreement} for r in self.new]
        execute_many(self.conn, insert_ignore_rows(self.conn.dialect.name, _TABLE[self.kind]), rows)
        self.new = []


def _store(conn: Connection, terms: Terms, agreement: str, kind: str, source_id: int, file: str,
           rows: Iterable[tuple[int, dict[str, Any] | RowReject]], result: IngestResult,
           frozen_before: int | None) -> None:
    # only events and exclusions name devices (an inventory's own rows are checked against the terms)
    known = set(_device_ids(conn, agreement)) if kind in ("events", "exclusions") else set()
    validator = RowValidator(terms, known)
    check = getattr(validator, f"{kind}_row")
    staged: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    rejects: list[tuple[int, dict[str, Any] | None, RowReject]] = []
    for line, row in rows:
        if isinstance(row, RowReject):
            rejects.append((line, None, row))
            continue
        try:
            rec = check(row)
        except RowReject as rej:
            rejects.append((line, row, rej))
            continue
        staged.append((line, row, rec))
        if kind == "devices":
            known.add(rec["device_id"])
    batch = _Batch(conn, agreement, kind, result, frozen_before)
    batch.preload([rec for _, _, rec in staged])
    for line, row, rec in staged:
        try:
            batch.add(rec, source_id, line)
        except RowReject as rej:
            rejects.append((line, row, rej))
    batch.flush()
    stamp = now()
    ordered = sorted(rejects, key=lambda r: r[0])
    q = [{"agreement": agreement, "kind": kind, "source_id": source_id, "file": file, "line": line,
          "field": rej.field, "reason": rej.reason, "raw": json.dumps(row, sort_keys=True, default=str),
          "created_at": stamp} for line, row, rej in ordered]
    if q:
        execute_many(conn, _Q_QUARANTINE, q)
    result.quarantined += len(q)
    result.problems += [(line, rej.field, rej.reason) for line, _, rej in ordered]


def _begin_source(conn: Connection, agreement: str, kind: str, name: str, digest: str,
                  checked: bool = False) -> int | None:
    """The new source's id, or None when this content was ingested before (`checked`: the caller
    just found it was not; a concurrent ingest of the same content then fails on uq_source_content)."""
    if not checked and _seen(conn, agreement, kind, digest):
        return None
    values = {"s_agreement": agreement, "s_kind": kind, "s_name": name, "s_sha256": digest, "s_at": now()}
    if conn.dialect.insert_returning:  # SQLite 3.35+, PostgreSQL: one statement on the DB-API cursor
        return int(fetch_tuples(conn, _Q_NEW_SOURCE_ID, values)[0][0])
    key = conn.execute(_Q_NEW_SOURCE, values).inserted_primary_key
    assert key is not None
    return int(key[0])


def _seen(conn: Connection, agreement: str, kind: str, digest: str) -> bool:
    return bool(fetch_tuples(conn, _Q_SEEN, {"agreement": agreement, "kind": kind, "sha256": digest}))


def _ingest(engine: Engine, terms: Terms, agreement: str, kind: str, name: str, digest: str,
            rows: Iterable[tuple[int, dict[str, Any] | RowReject]], frozen_before: int | None,
            fast: Path | None = None) -> IngestResult:
    if kind not in KINDS:
        raise IngestError(f"unknown kind {kind!r} ({', '.join(KINDS)})")
    with engine.begin() as conn:  # one transaction: a crash leaves nothing half-ingested
        lock_agreements(conn, [agreement])
        return _ingest_in(conn, terms, agreement, frozen_before, kind, name, digest, rows, fast)


def _ingest_in(conn: Connection, terms: Terms, agreement: str, frozen_before: int | None, kind: str, name: str,
               digest: str, rows: Iterable[tuple[int, dict[str, Any] | RowReject]],
               fast: Path | None = None, checked: bool = False) -> IngestResult:
    """One input, in the caller's transaction."""
    result = IngestResult(source=name, kind=kind)
    source_id = _begin_source(conn, agreement, kind, name, digest, checked)
    if source_id is None:
        result.skipped = True
        return result
    # What is frozen is read again now that this transaction writes (SQLite's write lock, or the
    # agreement's lock): a report stored since the caller looked freezes its period for these rows.
    frozen_before = max((f for f in (frozen_before, frozen_before_in(conn, terms, agreement)) if f is not None),
                        default=None)
    stored = None if fast is None else store_events_bulk(conn, _device_ids(conn, agreement), source_id, fast,
                                                         frozen_before, _events_held(conn, agreement))
    if stored is not None:
        result.accepted += stored
    else:
        _store(conn, terms, agreement, kind, source_id, name, rows, result, frozen_before)
    execute_many(conn, _Q_SOURCE_COUNTS, [{"source": source_id, "n_accepted": result.accepted,
                                            "n_duplicates": result.duplicates, "n_quarantined": result.quarantined}])
    if kind in ("devices",) and result.accepted:
        result.released = _release(conn, terms, agreement, frozen_before)
    return result


_Input = tuple[str, str, str, Iterable[tuple[int, dict[str, Any] | RowReject]], Path | None]
def ingest_file(engine: Engine, terms: Terms, agreement: str, path: str | Path, kind: str | None = None,
                frozen_before: int | None = None) -> IngestResult:
    """Ingest one CSV/JSONL file for `agreement`. Idempotent: the same content is ingested once."""
    kind, name, digest, rows, fast = _open(Path(path), kind)
    return _ingest(engine, terms, agreement, kind, name, digest, rows, frozen_before, fast)


def _open(p: Path, kind: str | None) -> _Input:
    """(kind, name, sha256, rows, path for the columnar path or None) of a file."""
    try:
        size = p.stat().st_size
        kind = kind or kind_of(p)
        if kind == "events" and p.suffix.lower() == ".csv" and size >= FAST_MIN_BYTES:
            # hashed as a stream; its bytes are read only if the row-by-row path needs them
            h = hashlib.sha256()
            with p.open("rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
            return kind, str(p), h.hexdigest(), _read_rows_later(p), p
        data = p.read_bytes()
    except OSError as exc:
        raise IngestError(f"{p}: cannot read: {exc.strerror}") from None
    return kind, str(p), hashlib.sha256(data).hexdigest(), read_rows(p, data), None


def _read_rows_later(p: Path) -> Iterator[tuple[int, dict[str, Any] | RowReject]]:
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise IngestError(f"{p}: cannot read: {exc.strerror}") from None
    yield from read_rows(p, data)


def ingest_rows(engine: Engine, terms: Terms, agreement: str, kind: str, rows: list[dict[str, Any]],
                origin: str = "http", frozen_before: int | None = None) -> IngestResult:
    """Ingest a batch of rows (e.g. an HTTP request body); line = 1-based position in the batch.
    The same batch content sent twice is ingested once."""
    body = json.dumps(rows, sort_keys=True, separators=(",", ":"), default=str).encode()
    digest = hashlib.sha256(body).hexdigest()
    items: list[tuple[int, dict[str, Any] | RowReject]] = [
        (i, r if isinstance(r, dict) else RowReject("(row)", "not an object")) for i, r in enumerate(rows, start=1)]
    return _ingest(engine, terms, agreement, kind, f"{origin}:{digest[:12]}", digest, items, frozen_before)


def _release(conn: Connection, terms: Terms, agreement: str, frozen_before: int | None) -> int:
    """Retry open quarantined rows that failed only for an unknown device (late inventory)."""
    names = quarantine.columns.keys()
    held = [dict(zip(names, r)) for r in fetch_tuples(conn, _Q_OPEN_UNKNOWN_DEVICE, {"agreement": agreement})]
    released = 0
    for kind in ("events", "exclusions"):
        mine = [q for q in held if q["kind"] == kind]
        if not mine:
            continue
        scratch = IngestResult(source="(requeue)", kind=kind)
        validator = RowValidator(terms, set(_device_ids(conn, agreement)))
        batch = _Batch(conn, agreement, kind, scratch, frozen_before)
        ok: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for q in mine:
            try:
                ok.append((q, getattr(validator, f"{kind}_row")(json.loads(q["raw"]))))
            except RowReject:
                continue
        batch.preload([rec for _, rec in ok])
        for q, rec in ok:
            try:
                batch.add(rec, q["source_id"], q["line"])
            except RowReject:
                continue
            execute_many(conn, _Q_RESOLVE, [{"qid": q["id"], "stamp": now()}])
            released += 1
        batch.flush()
    return released


def ingest_folder(engine: Engine, terms: Terms, agreement: str, folder: Path,
                  frozen_before: int | None = None) -> list[IngestResult]:
    """Ingest every evidence file of a folder (devices first, so events can name them);
    files ingested before are skipped by content hash. One transaction for the folder: a file
    that fails is rolled back alone, the files before it stay ingested and its error is raised
    (the files after it wait for the next pass)."""
    files: list[Path] = []
    if folder.is_dir():
        with os.scandir(folder) as entries:  # the entries' types without a stat each
            files = [Path(e.path) for e in entries if e.name.lower().endswith(SUFFIXES) and e.is_file()]
    order = {k: i for i, k in enumerate(KINDS)}
    known = [(order[k], p.name, p) for p in files for k in [_kind_or_none(p)] if k is not None]
    results: list[IngestResult] = []
    failed: Exception | None = None
    if not known:
        return results
    # One commit for the folder, each file after the first one written in a savepoint of its
    # own: the same outcome as a transaction per file.
    with engine.begin() as conn:
        lock_agreements(conn, [agreement])
        writing = False
        for _, _, p in sorted(known):
            try:
                kind, name, digest, rows, fast = _open(p, None)
            except IngestError as exc:
                failed = exc
                break
            if not writing:
                if _seen(conn, agreement, kind, digest):  # a read: nothing new, no write lock
                    results.append(IngestResult(source=name, kind=kind, skipped=True))
                    continue
                # Nothing written before it: if it fails, the transaction rolls back whole. Its
                # first statement, the INSERT of its source, begins the transaction (sqlite3's
                # legacy transaction control sends BEGIN only before INSERT, UPDATE or DELETE; a
                # SAVEPOINT outside a transaction would start one of its own, committed by its
                # RELEASE) and takes SQLite's write lock before the transaction has read anything.
                results.append(_ingest_in(conn, terms, agreement, frozen_before, kind, name, digest, rows, fast,
                                          checked=True))
                writing = True
                continue
            try:
                with _savepoint(conn):
                    results.append(_ingest_in(conn, terms, agreement, frozen_before, kind, name, digest, rows, fast))
            except Exception as exc:  # noqa: BLE001 - raised once the files before it are committed
                failed = exc
                break
    if failed is not None:
        raise failed
    return results


@contextmanager
def _savepoint(conn: Connection) -> Iterator[None]:
    """SAVEPOINT / RELEASE SAVEPOINT around one file, or ROLLBACK TO SAVEPOINT when it fails: the
    statements conn.begin_nested() sends (standard SQL, in SQLite and PostgreSQL alike), run on
    the DB-API cursor: SQLAlchemy compiles each of them anew, which costs more than all the other
    statements of a small file. The transaction must have begun (for sqlite3 a savepoint outside
    one is a transaction of its own): ingest_folder opens one per file after the first written."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute("SAVEPOINT ingest_file")
        try:
            yield
        except BaseException:
            cursor.execute("ROLLBACK TO SAVEPOINT ingest_file")
            cursor.execute("RELEASE SAVEPOINT ingest_file")
            raise
        cursor.execute("RELEASE SAVEPOINT ingest_file")
    finally:
        cursor.close()


def _kind_or_none(p: Path) -> str | None:
    try:
        return kind_of(p)
    except IngestError:
        return None


def quarantined(engine: Engine, agreement: str, open_only: bool = True) -> list[dict[str, Any]]:
    q = select(quarantine).where(quarantine.c.agreement == agreement)
    if open_only:
        q = q.where(quarantine.c.resolved_at.is_(None))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(q.order_by(quarantine.c.id)).mappings()]
