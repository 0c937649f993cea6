"""The protocol endpoints' door into the store: group commit from many threads, per-caller
quarantine reasons, duplicates counted once, nothing acknowledged lost."""
from __future__ import annotations

import threading

from sqlalchemy import func, select

from oracle.core.terms import load_terms
from oracle.store import db
from oracle.store.ingest import ingest_file, quarantined
from oracle.telemetry.sink import EventSink, StatusEvent
from tests.e2e.helpers import EXAMPLE

TERMS = load_terms(EXAMPLE / "terms.yaml")
A = "acme"
T0 = 1_793_577_600  # 2026-11-01T00:00:00Z


def _events(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(db.events)).scalar() or 0)


def test_many_threads_are_written_in_few_commits_and_each_learns_its_problems(engine):
    ingest_file(engine, TERMS, A, EXAMPLE / "evidence" / "devices.csv")
    sink = EventSink(engine, TERMS, A, "test", max_batch=400, max_wait_s=0.05)
    results = {}

    def worker(k: int) -> None:
        evs = [StatusEvent(T0 + 60 * (k * 100 + i), "N1", "available") for i in range(99)]
        evs.append(StatusEvent(T0 + k, "NOPE" if k % 2 else "N1", "exploded" if k % 3 == 0 else "faulted"))
        results[k] = sink.submit(evs).result(timeout=30)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    for k, w in results.items():
        # row 100 of each submission: an unknown device (odd k) and/or a state that is not one (k % 3 == 0)
        wrong = {"device_id"} if k % 2 else set()
        wrong |= {"state"} if k % 3 == 0 else set()
        assert [p.index for p in w.problems] == ([100] if wrong else []), (k, w.problems)
        assert {p.field for p in w.problems} <= wrong
    stored = 12 * 99 + sum(1 for k in range(12) if k % 2 == 0 and k % 3 != 0)
    assert _events(engine) == stored
    assert len({w.source for w in results.values()}) < 12  # grouped into fewer commits than callers
    assert len(quarantined(engine, A)) == sum(1 for k in range(12) if k % 2 or k % 3 == 0)


def test_a_resent_event_counts_once(engine):
    ingest_file(engine, TERMS, A, EXAMPLE / "evidence" / "devices.csv")
    sink = EventSink(engine, TERMS, A, "test")
    first = sink.submit([StatusEvent(T0, "N1", "faulted")]).result(timeout=30)
    again = sink.submit([StatusEvent(T0, "N1", "faulted"), StatusEvent(T0 + 60, "N1", "available")]).result(30)
    sink.close()
    assert (first.accepted, again.accepted, again.problems) == (1, 2, ())
    assert _events(engine) == 2
