"""Ingest of an inbox folder: one transaction for the folder with a savepoint per file. A file
whose ingest fails is rolled back alone (the files before it stay, the error is raised, the
files after it wait for the next pass), and the folder stores exactly what ingesting its files
one by one stores."""
from __future__ import annotations

import json
import re
import shutil

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from oracle.core.terms import load_terms
from oracle.store import db, ingest
from oracle.store.ingest import IngestError, ingest_file, ingest_folder, ingest_rows
from tests.e2e.helpers import EXAMPLE

TERMS = load_terms(EXAMPLE / "terms.yaml")
A = "acme"


@pytest.fixture
def inbox(tmp_path):
    folder = tmp_path / "inbox"
    shutil.copytree(EXAMPLE / "evidence", folder)
    return folder


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar()
                for t in (db.sources, db.devices, db.events, db.exclusions, db.quarantine)}


@pytest.mark.parametrize("failure", ["python", "database"])
def test_a_file_that_fails_is_rolled_back_alone(engine, inbox, monkeypatch, failure):
    store_fast = ingest.store_events_bulk

    def fails_after_writing(conn, *args, **kwargs):
        assert store_fast(conn, *args, **kwargs)  # its rows are written...
        if failure == "python":  # ...then the file fails
            raise RuntimeError("disk full")
        # a statement the database refuses (which aborts the transaction on PostgreSQL)
        conn.execute(db.sources.insert(), {"agreement": A, "kind": "devices", "name": "again", "ingested_at": 0,
                                           "sha256": conn.execute(select(db.sources.c.sha256)).scalar()})

    with monkeypatch.context() as m:
        m.setattr(ingest, "store_events_bulk", fails_after_writing)
        with pytest.raises(RuntimeError if failure == "python" else IntegrityError):
            ingest_folder(engine, TERMS, A, inbox)
    # the inventory before it stays; nothing of the events file (rows, source), nor of the
    # exclusions after it
    assert counts(engine) == {"sources": 1, "devices": 7, "events": 0, "exclusions": 0, "quarantine": 0}
    again = ingest_folder(engine, TERMS, A, inbox)
    assert [(r.kind, r.skipped, r.accepted) for r in again] == [
        ("devices", True, 0), ("events", False, 10437), ("exclusions", False, 1)]
    assert counts(engine) == {"sources": 3, "devices": 7, "events": 10437, "exclusions": 1, "quarantine": 0}


def test_an_unreadable_file_stops_the_folder_after_the_files_before_it(engine, inbox, monkeypatch):
    open_file = ingest._open

    def unreadable(p, kind):
        if p.name == "exclusions.csv":
            raise IngestError(f"{p}: cannot read: Permission denied")
        return open_file(p, kind)

    monkeypatch.setattr(ingest, "_open", unreadable)
    with pytest.raises(IngestError, match="Permission denied"):
        ingest_folder(engine, TERMS, A, inbox)
    assert counts(engine) == {"sources": 2, "devices": 7, "events": 10437, "exclusions": 0, "quarantine": 0}


def test_when_the_first_new_file_fails_nothing_is_stored(engine, inbox, monkeypatch):
    ingest_file(engine, TERMS, A, inbox / "devices.csv")  # skipped by the folder: events is its first write

    def fails(*args, **kwargs):
        raise RuntimeError("boom")

    with monkeypatch.context() as m:
        m.setattr(ingest, "store_events_bulk", fails)
        with pytest.raises(RuntimeError, match="boom"):
            ingest_folder(engine, TERMS, A, inbox)
    assert counts(engine) == {"sources": 1, "devices": 7, "events": 0, "exclusions": 0, "quarantine": 0}
    # and a folder whose very first file fails stores nothing at all
    with monkeypatch.context() as m:
        m.setattr(ingest, "_store", fails)
        with pytest.raises(RuntimeError, match="boom"):
            ingest_folder(engine, TERMS, "other", inbox)
    assert counts(engine)["sources"] == 1
    assert [r.accepted for r in ingest_folder(engine, TERMS, A, inbox)] == [0, 10437, 1]


def _sources(engine, agreement: str) -> dict[int, int]:
    """source id -> its rank among the agreement's sources (the ids differ between agreements)."""
    with engine.connect() as conn:
        ids = conn.execute(select(db.sources.c.id).where(db.sources.c.agreement == agreement)
                           .order_by(db.sources.c.id)).scalars().all()
    return {i: n for n, i in enumerate(ids)}


def _reason(text: str, rank: dict[int, int]) -> str:
    return re.sub(r"source (\d+)", lambda m: f"source #{rank[int(m.group(1))]}", text)


def _stored(engine, agreement: str) -> dict[str, list]:
    """Everything stored for an agreement, without generated ids, names and clocks."""
    d, e, x, s, q = db.devices, db.events, db.exclusions, db.sources, db.quarantine
    kinds = _sources(engine, agreement)
    with engine.connect() as conn:
        out = {"sources": sorted(conn.execute(select(s.c.kind, s.c.sha256, s.c.accepted, s.c.duplicates,
                                                     s.c.quarantined)
                                              .where(s.c.agreement == agreement)).all())}
        out["devices"] = sorted((r[:-2], kinds[r[-2]], r[-1]) for r in conn.execute(
            select(d.c.device_id, d.c.site_id, d.c.weight, d.c.deployed_at, d.c.retired_at, d.c.source_id, d.c.line)
            .where(d.c.agreement == agreement)).all())
        out["events"] = sorted((did, ts, st, kinds[sid], line) for did, ts, st, sid, line in conn.execute(
            select(d.c.device_id, e.c.ts, e.c.state, e.c.source_id, e.c.line).join(d, d.c.id == e.c.device)
            .where(d.c.agreement == agreement)).all())
        out["exclusions"] = sorted((r[:-2], kinds[r[-2]], r[-1]) for r in conn.execute(
            select(x.c.start_ts, x.c.end_ts, x.c.scope, x.c.reason, x.c.source_id, x.c.line)
            .where(x.c.agreement == agreement)).all())
        out["quarantine"] = sorted((r[0], kinds[r[1]], r[2].rsplit("/", 1)[-1], r[3], r[4], _reason(r[5], kinds),
                                    *r[6:])
                                   for r in conn.execute(
            select(q.c.kind, q.c.source_id, q.c.file, q.c.line, q.c.field, q.c.reason, q.c.raw,
                   q.c.resolved_at.is_(None)).where(q.c.agreement == agreement)).all())
    return out


def test_the_folder_stores_what_its_files_ingested_one_by_one_store(engine, tmp_path):
    """Quarantined rows (with reasons), duplicates, a late inventory releasing held rows, a
    retirement filled in, the columnar and the row-by-row events paths: the same rows,
    provenance and quarantine either way."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "devices.csv").write_text(
        (EXAMPLE / "evidence" / "devices.csv").read_text() + "X9,north,1,2026-01-01T00:00:00Z,\n"
        "Y1,nowhere,1,2026-01-01T00:00:00Z,\n" "Z1,north,0,2026-01-01T00:00:00Z,\n")
    (folder / "devices_2.csv").write_text(
        "device_id,site_id,deployed_at,retired_at\nN1,north,2026-01-01T00:00:00Z,2026-11-01T00:00:00Z\n")
    shutil.copy(EXAMPLE / "evidence" / "events.csv", folder / "events.csv")
    (folder / "events_late.jsonl").write_text(
        '{"ts": "2026-10-02T00:00:00Z", "device_id": "N2", "state": "faulted"}\n{not json}\n'
        '{"ts": "2026-10-02T00:00:00Z", "device_id": "Q7", "state": "faulted"}\n'
        '{"ts": "2026-10-01T00:00:00Z", "device_id": "N1", "state": "exploded"}\n')
    (folder / "exclusions.csv").write_text(
        "start,end,scope,reason\n2026-10-20T02:00:00Z,2026-10-20T04:00:00Z,site:south,planned maintenance\n"
        "2026-10-21T02:00:00Z,2026-10-21T01:00:00Z,*,backwards\n2026-10-22T02:00:00Z,2026-10-22T04:00:00Z,device:X9,\n"
        "2026-10-20T02:00:00Z,2026-10-20T04:00:00Z,site:south,planned maintenance\n")
    held = [{"ts": "2026-10-03T00:00:00Z", "device_id": "X9", "state": "faulted"}]
    results = {}
    for agreement in ("by_folder", "by_file"):
        ingest_rows(engine, TERMS, agreement, "events", held, origin="http:vendor")  # held: X9 is unknown yet
    results["by_folder"] = ingest_folder(engine, TERMS, "by_folder", folder)
    order = {k: i for i, k in enumerate(ingest.KINDS)}
    files = sorted(folder.iterdir(), key=lambda p: (order[ingest.kind_of(p)], p.name))
    results["by_file"] = [ingest_file(engine, TERMS, "by_file", p) for p in files]
    a, b = ([(r.kind, r.accepted, r.duplicates, r.quarantined, r.released, r.skipped,
              [(ln, f, _reason(why, _sources(engine, k))) for ln, f, why in r.problems]) for r in results[k]]
            for k in ("by_folder", "by_file"))
    assert a == b
    assert [(r.source.rsplit("/", 1)[-1], r.accepted, r.released) for r in results["by_folder"]] == [
        ("devices.csv", 8, 1), ("devices_2.csv", 1, 0), ("events.csv", 10437, 0), ("events_late.jsonl", 0, 0),
        ("exclusions.csv", 2, 0)]
    assert [r.quarantined for r in results["by_folder"]] == [2, 0, 0, 4, 1]
    folder_rows, file_rows = _stored(engine, "by_folder"), _stored(engine, "by_file")
    assert folder_rows == file_rows
    assert len(folder_rows["events"]) == 10437 + 1  # and the released X9 row, with its original provenance
    assert ("X9", 1790985600, 2, 0, 1) in folder_rows["events"]
    assert {json.loads(q[6])["state"] for q in folder_rows["quarantine"] if q[4] == "state"} >= {"exploded"}
    assert all(r.skipped for r in ingest_folder(engine, TERMS, "by_folder", folder))
