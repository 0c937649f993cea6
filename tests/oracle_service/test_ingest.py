"""Ingest into a real SQLite file: idempotency, quarantine with file/line/reason, late inventory,
HTTP batches; and the settings loader."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, func, select

from oracle import db
from tests.e2e.helpers import EXAMPLE
from oracle.ingest import ingest_file, ingest_folder, ingest_rows, quarantined
from oracle.settings import SettingsError, load_settings
from oracle.terms import load_terms

TERMS = load_terms(EXAMPLE / "terms.yaml")
A = "acme"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    """The same code on a SQLite file and on PostgreSQL (skipped where no server can be had)."""
    if request.param == "sqlite":
        engine = db.connect(f"sqlite:///{tmp_path / 'oracle.db'}")
    else:
        fresh = create_engine(request.getfixturevalue("postgres_url"))
        db.metadata.drop_all(fresh)
        fresh.dispose()
        engine = db.connect(request.getfixturevalue("postgres_url"))
    yield engine
    engine.dispose()


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
