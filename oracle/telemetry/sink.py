"""The one door from protocol endpoints (OCPP, OCPI, MQTT) into the store: events from many
connections are grouped into one ingest transaction (group commit) and each caller learns, once
its rows are committed, which of them were quarantined and why.

Rows go through `oracle.store.ingest.ingest_rows`, so protocol telemetry is durable, deduplicated
(an identical row counts once; an identical batch is skipped) and quarantined with reasons
exactly as files and API batches are. A caller acknowledges to its device (OCPP CALLRESULT, MQTT
PUBACK) only after `submit(...).result()`: nothing acknowledged is lost."""
from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from oracle.core.calendar import iso_utc
from oracle.core.terms import Terms
from oracle.store.ingest import IngestResult, ingest_rows


@dataclass(frozen=True)
class StatusEvent:
    """One device state at one instant: `state` is an evidence state (after the status map); a
    value that is not one is quarantined by ingest with the reason."""

    ts: int  # epoch seconds
    device_id: str
    state: str


@dataclass(frozen=True)
class Problem:
    """A quarantined row of a submission: its 1-based position in that submission, field, reason."""

    index: int
    field: str
    reason: str


@dataclass(frozen=True)
class Written:
    """What became of one submission once committed."""

    rows: int
    problems: tuple[Problem, ...] = ()
    source: str = ""  # the ingest source (batch) it was committed in

    @property
    def accepted(self) -> int:
        """Rows stored or found already stored (identical rows count once)."""
        return self.rows - len(self.problems)


@dataclass
class _Pending:
    events: Sequence[StatusEvent]
    done: Future[Written] = field(default_factory=Future)


class SinkClosed(RuntimeError):
    """`submit` after `close`."""


class EventSink:
    """A writer thread for one agreement: `submit` queues events and returns a Future that
    resolves to `Written` after the commit (or to the ingest's exception: nothing was stored).
    Batches hold at most `max_batch` rows, gathered for at most `max_wait_s` after the first."""

    def __init__(self, engine: Engine, terms: Terms, agreement: str, origin: str, *,
                 max_batch: int = 5_000, max_wait_s: float = 0.01) -> None:
        self.engine, self.terms, self.agreement, self.origin = engine, terms, agreement, origin
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"sink-{agreement}", daemon=True)
        self._thread.start()

    def submit(self, events: Sequence[StatusEvent]) -> Future[Written]:
        if self._closed:
            raise SinkClosed(f"the sink of {self.agreement} is closed")
        pending = _Pending(tuple(events))
        if not pending.events:
            pending.done.set_result(Written(0))
        else:
            self._queue.put(pending)
        return pending.done

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the writer."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch, size = [first], len(first.events)
            while size < self.max_batch:
                try:
                    item = self._queue.get(timeout=self.max_wait_s)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
                size += len(item.events)
            self._write(batch)

    def _write(self, batch: list[_Pending]) -> None:
        rows = [{"ts": iso_utc(e.ts), "device_id": e.device_id, "state": e.state} for p in batch for e in p.events]
        try:
            result = ingest_rows(self.engine, self.terms, self.agreement, "events", rows, self.origin)
        except Exception as exc:  # noqa: BLE001 - every waiting caller learns it; nothing was stored
            for p in batch:
                p.done.set_exception(exc)
            return
        _resolve(batch, result)


def _resolve(batch: list[_Pending], result: IngestResult) -> None:
    by_line: dict[int, list[tuple[str, str]]] = {}
    for line, fld, reason in result.problems:
        by_line.setdefault(line, []).append((fld, reason))
    offset = 0
    for p in batch:
        problems = tuple(Problem(line - offset, f, r) for line in range(offset + 1, offset + len(p.events) + 1)
                         for f, r in by_line.get(line, ()))
        p.done.set_result(Written(len(p.events), problems, result.source))
        offset += len(p.events)
