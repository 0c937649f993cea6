"""Ingest into a real SQLite file: idempotency, quarantine with file/line/reason, late inventory,
HTTP batches; and the settings loader."""
from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import func, select

from oracle.core.calendar import iso_utc
from oracle.core.period import period_bounds
from oracle.core.terms import load_terms
from oracle.evidence.schema import STATES
from oracle.node.settings import SettingsError, load_settings
from oracle.store import db, ingest
from oracle.store.export import export_evidence
from oracle.store.ingest import ingest_file, ingest_folder, ingest_rows, quarantined
from tests.e2e.helpers import EXAMPLE

TERMS = load_terms(EXAMPLE / "terms.yaml")
A = "acme"


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def test_reingesting_the_same_files_changes_nothing(engine, tmp_path):
    first = ingest_folder(engine, TERMS, A, EXAMPLE / "evidence")
    assert [(r.kind, r.accepted, r.quarantined) for r in first] == [
        ("devices", 7, 0), ("events", 10437, 0), ("exclusions", 1, 0)]
    again = ingest_folder(engine, TERMS, A, EXAMPLE / "evidence")
    assert all(r.skipped and r.accepted == 0 for r in again)
    # the same rows under another name (plus one new row): duplicates counted, only the new row stored
    copy = tmp_path / "events-resend.csv"
    copy.write_text((EXAMPLE / "evidence" / "events.csv").read_text() + "2026-12-01T00:00:00Z,N1,faulted\n")
    r = ingest_file(engine, TERMS, A, copy)
    assert (r.accepted, r.duplicates, r.quarantined) == (1, 10437, 0)
    assert count(engine, db.events) == 10438 and count(engine, db.sources) == 4


def test_malformed_rows_are_quarantined_with_file_line_and_reason(engine, tmp_path):
    ingest_file(engine, TERMS, A, EXAMPLE / "evidence" / "devices.csv")
    bad = tmp_path / "events.csv"
    bad.write_text(
        "ts,device_id,state\n"
        "2026-10-01T00:00:00Z,N1,available\n"       # 2 ok
        "yesterday,N1,available\n"                  # 3 bad ts
        "2026-10-01T00:05:00Z,N1,exploded\n"        # 4 bad state
        "2026-10-01T00:06:00Z,N1\n"                 # 5 ragged
        "2026-10-01T00:00:00Z,N1,faulted\n"         # 6 conflicts with line 2
        "2026-10-01T00:07:00Z,N1,in_use\n"          # 7 ok
        "2026-10-01T00:00:00Z,N1,available\n")      # 8 duplicate of line 2
    r = ingest_file(engine, TERMS, A, bad)
    assert (r.accepted, r.duplicates, r.quarantined) == (2, 1, 4)
    held = quarantined(engine, A)
    assert [(q["file"].endswith("events.csv"), q["line"], q["field"]) for q in held] == [
        (True, 3, "ts"), (True, 4, "state"), (True, 5, "(row)"), (True, 6, "state")]
    assert "not an ISO-8601 instant" in held[0]["reason"]
    assert "already has state 'available'" in held[3]["reason"] and "line 2" in held[3]["reason"]
    assert json.loads(held[1]["raw"])["state"] == "exploded"  # the row itself is kept
    with engine.connect() as conn:
        kept = conn.execute(select(db.events.c.line, db.events.c.source_id)).all()
    assert sorted(line for line, _ in kept) == [2, 7]  # provenance: source and line of every row

    jl = tmp_path / "events-late.jsonl"
    jl.write_text('{"ts": "2026-10-02T00:00:00Z", "device_id": "N2", "state": "faulted"}\n{not json}\n[1]\n')
    r = ingest_file(engine, TERMS, A, jl)
    assert (r.accepted, r.quarantined) == (1, 2)
    assert [p[0] for p in r.problems] == [2, 3]


def test_events_before_their_inventory_are_held_then_released(engine, tmp_path):
    ev = tmp_path / "events.csv"
    ev.write_text("ts,device_id,state\n2026-10-01T00:00:00Z,X9,available\n")
    assert ingest_file(engine, TERMS, A, ev).quarantined == 1
    dev = tmp_path / "devices.csv"
    dev.write_text("device_id,site_id,deployed_at\nX9,north,2026-01-01T00:00:00Z\n")
    r = ingest_file(engine, TERMS, A, dev)
    assert r.released == 1
    assert quarantined(engine, A) == [] and count(engine, db.events) == 1
    # a retirement arriving later fills in the inventory row instead of conflicting
    dev2 = tmp_path / "devices-2.csv"
    dev2.write_text("device_id,site_id,deployed_at,retired_at\nX9,north,2026-01-01T00:00:00Z,2026-11-01T00:00:00Z\n")
    assert ingest_file(engine, TERMS, A, dev2).accepted == 1
    with engine.connect() as conn:
        assert conn.execute(select(db.devices.c.retired_at)).scalar() == 1793491200


def test_http_batches_are_idempotent_and_rows_for_closed_periods_are_quarantined(engine):
    ingest_file(engine, TERMS, A, EXAMPLE / "evidence" / "devices.csv")
    rows = [{"ts": "2026-10-03T00:00:00Z", "device_id": "S1", "state": "faulted"},
            {"ts": "2026-10-03T00:00:00Z", "device_id": "S1"}]
    r = ingest_rows(engine, TERMS, A, "events", rows, origin="http:vendor", frozen_before=1793491200)
    assert (r.accepted, r.quarantined, r.late) == (0, 2, 1)
    assert r.problems[1] == (2, "state", "is missing or empty")
    assert r.problems[0][:2] == (1, "ts") and "already closed" in r.problems[0][2]
    assert ingest_rows(engine, TERMS, A, "events", rows).skipped


def _stored(engine, agreement: str) -> dict[tuple[str, str], tuple[str, int]]:
    """(device_id, ts) -> (state, line) of an agreement's events (keyed by devices.id in the table)."""
    with engine.connect() as conn:
        rows = conn.execute(select(db.devices.c.device_id, db.events.c.ts, db.events.c.state, db.events.c.line)
                            .join(db.devices, db.devices.c.id == db.events.c.device)
                            .where(db.devices.c.agreement == agreement)).all()
    return {(d, iso_utc(ts)): (STATES[st], line) for d, ts, st, line in rows}


def test_large_files_take_the_columnar_path_and_store_what_the_row_path_stores(engine, tmp_path, monkeypatch):
    """The example's events.csv (time-ordered) and the same rows shuffled, both over
    FAST_MIN_BYTES: stored by the columnar path with the line of every row; the same rows as
    JSONL go row by row. All three agreements export byte-identical evidence; a large file with
    one conflicting row falls back to the row path, which names both lines."""
    header, *lines = (EXAMPLE / "evidence" / "events.csv").read_text().splitlines()
    random.Random(7).shuffle(lines)
    shuffled = tmp_path / "events-shuffled.csv"
    shuffled.write_text("\n".join([header, *lines]) + "\n")
    jl = tmp_path / "events.jsonl"
    jl.write_text("".join(json.dumps(dict(zip(header.split(","), ln.split(",")))) + "\n" for ln in lines))
    for a in ("A", "B", "C", "D"):
        ingest_file(engine, TERMS, a, EXAMPLE / "evidence" / "devices.csv")

    with monkeypatch.context() as m:  # the row-by-row path must not be taken
        m.setattr(ingest, "_store", lambda *a, **k: pytest.fail("row-by-row path taken"))
        assert ingest_file(engine, TERMS, "A", EXAMPLE / "evidence" / "events.csv").accepted == 10437
        assert ingest_file(engine, TERMS, "B", shuffled).accepted == 10437
    assert ingest_file(engine, TERMS, "C", jl).accepted == 10437
    expected = {(d, ts): (st, i) for i, ln in enumerate(lines, start=2) for ts, d, st in [ln.split(",")]}
    assert _stored(engine, "B") == expected  # the CSV's lines (header = line 1)
    assert _stored(engine, "C") == {k: (st, i - 1) for k, (st, i) in expected.items()}  # JSONL: no header
    start, end = period_bounds(TERMS, "2026-10")
    with engine.connect() as conn:
        a, b, c = (export_evidence(conn, x, start, end) for x in "ABC")
        nov = [export_evidence(conn, x, end, end + 86400) for x in "AC"]
    assert a == b == c and nov[0] == nov[1] and nov[0]["events.csv"].count(b"\n") == 1 + 7

    ts, device, state = lines[100].split(",")
    other = next(s for s in STATES if s != state)
    conflict = tmp_path / "events-conflict.csv"
    conflict.write_text("\n".join([header, *lines, f"{ts},{device},{other}"]) + "\n")
    r = ingest_file(engine, TERMS, "D", conflict)
    assert (r.accepted, r.duplicates, r.quarantined) == (10437, 0, 1)
    [(line, field_, reason)] = r.problems
    assert (line, field_) == (len(lines) + 2, "state") and "line 102" in reason and repr(state) in reason


def test_settings_from_toml_and_env(tmp_path):
    cfg = tmp_path / "oracle.toml"
    cfg.write_text('rpc_url = "http://a:1"\ngrace = "2d"\nkeystores = ["k/o1.json"]\n'
                   '[[agreements]]\naddress = "0x0000000000000000000000000000000000000001"\nterms = "t.yaml"\n')
    s = load_settings(cfg, env={"SLACOMP_ORACLE_RPC_URL": "http://b:2", "SLACOMP_ORACLE_CONFIRMATIONS": "5"})
    assert (s.rpc_url, s.grace, s.confirmations) == ("http://b:2", 172_800, 5)
    assert s.keystores == (tmp_path / "k" / "o1.json",) and s.agreements[0].terms == tmp_path / "t.yaml"
    cfg.write_text('private_key = "0xabc"\n')
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(cfg, env={})


def test_a_database_of_an_older_layout_is_refused_with_a_clear_message(tmp_path):
    """create_all leaves an existing table alone: the node must not start on an events table of
    the old layout (string keys) and fail later with SQL errors."""
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, agreement TEXT, device_id TEXT, ts INTEGER, "
                 "state TEXT, source_id INTEGER, line INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(db.SchemaError, match=r"table 'events' has an older layout \(no column device\)"):
        db.connect(f"sqlite:///{path}")


def test_export_writes_what_a_plain_csv_writer_writes(engine, tmp_path):
    """export_evidence builds events.csv from table lookups; a plain csv.writer over the same
    rows (sorted by device id and time, each device's last event before the window first,
    ids that need quoting included) gives the same bytes, on every window."""
    import csv as csvmod
    import io

    from oracle.core.calendar import iso_utc_array
    from oracle.evidence.csv import parse_ts_text

    header, *lines = (EXAMPLE / "evidence" / "events.csv").read_text().splitlines()
    rows = [ln.split(",") for ln in lines]
    odd = {d: f'{d},"q"' for d in sorted({r[1] for r in rows})[::2]}  # every other id needs quoting
    devs = list(csvmod.reader((EXAMPLE / "evidence" / "devices.csv").read_text().splitlines()))
    for name, table in (("devices.csv", [devs[0]] + [[odd.get(r[0], r[0]), *r[1:]] for r in devs[1:]]),
                        ("events.csv", [header.split(",")] + [[t, odd.get(d, d), s] for t, d, s in rows])):
        with open(tmp_path / name, "w", newline="") as f:
            csvmod.writer(f, lineterminator="\n").writerows(table)
    ingest_folder(engine, TERMS, A, tmp_path)
    stamps = {}
    for t, d, s in rows:
        stamps.setdefault(odd.get(d, d), []).append((parse_ts_text(t), s))
    start, end = period_bounds(TERMS, "2026-10")
    for lo, hi in ((start, end), (start + 13 * 86400 + 3601, end + 9 * 86400), (end, end + 86400), (0, start)):
        buf = io.StringIO(newline="")
        w = csvmod.writer(buf, lineterminator="\n")
        w.writerow(header.split(","))
        for d in sorted(stamps):
            mine = sorted(stamps[d])
            before = [x for x in mine if x[0] < lo][-1:]
            w.writerows([iso_utc(t), d, s] for t, s in before + [x for x in mine if lo <= x[0] < hi])
        with engine.connect() as conn:
            assert export_evidence(conn, A, lo, hi)["events.csv"] == buf.getvalue().encode(), (lo, hi)
    rng = random.Random(3)
    instants = [rng.randrange(-2**33, 2**35) for _ in range(5000)] + [-1, 0, 86399, 86400]
    assert iso_utc_array(instants).tolist() == [iso_utc(t) for t in instants]


def test_window_columns_sort_what_the_aggregate_gives_out_of_order():
    """The database's string aggregate promises no order: each device's "ts,state" pairs are
    put in time order, devices kept in the order given, devices without events left out."""
    from oracle.store.export import _window_columns

    def text(*pairs):  # the query's form: ts * 8 + state code
        return ",".join(str(t * 8 + s) for t, s in pairs)

    dev, ts, state = _window_columns([(7, text((30, 1), (10, 0), (20, 2))), (3, None), (5, text((-5, 4))), (9, "")])
    assert dev.tolist() == [7, 7, 7, 5]
    assert ts.tolist() == [10, 20, 30, -5]
    assert state.tolist() == [0, 2, 1, 4]
    assert [c.tolist() for c in _window_columns([(1, None)])] == [[], [], []]


def test_worker_commits_skip_the_disk_wait_and_the_node_s_do_not(tmp_path):
    """The workers' engine (inbox files only) commits without waiting for the disk; the node's
    own engine (reports, signatures, transactions, HTTP batches) waits for every commit."""
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'o.db'}"
    for sync, expected in ((True, 2), (False, 1)):  # FULL, NORMAL
        engine = db.connect(url, sync_commits=sync)
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar() == expected
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        engine.dispose()


def test_pass_chunks_cover_every_agreement_once_and_shrink_at_the_end():
    """The loop serves agreements in chunks of CHUNK; the last 2 * CHUNK in halving chunks (the
    last one's chain work runs once the workers are done)."""
    from oracle.node.loop import CHUNK, TAIL_CHUNK, _chunks

    for n in (0, 1, TAIL_CHUNK, 2 * TAIL_CHUNK + 1, CHUNK, 2 * CHUNK, 2 * CHUNK + 1, 1000):
        bounds = _chunks(n)
        assert [i for lo, hi in bounds for i in range(lo, hi)] == list(range(n))
        assert all(0 < hi - lo <= CHUNK for lo, hi in bounds)
    sizes = [hi - lo for lo, hi in _chunks(1000)]
    assert sizes[:19] == [CHUNK] * 19 and sizes[19:] == [25, 12, 13]
