"""Late data and bad input against the running service (real Anvil, real SQLite file): rows that
arrive inside the grace are in the closed report; rows that arrive after the close are
quarantined and the report stays as it was; fuzzed malformed files neither disturb the rows of
good files nor stop the loop."""
from __future__ import annotations

import hashlib
import shutil
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from oracle.core.period import period_bounds
from oracle.core.terms import load_terms
from oracle.engine.kpi import compute_period
from oracle.engine.replay import recompute
from oracle.evidence.bundle import bundle_path, find_bundle, load_bundle
from oracle.evidence.load import load_evidence
from oracle.node.loop import Service
from oracle.store import db
from oracle.store.ingest import quarantined
from tests.e2e.helpers import EXAMPLE
from tests.oracle_service.conftest import settings_from, write_config

TERMS = load_terms(EXAMPLE / "terms.yaml")
OCTOBER = compute_period(TERMS, load_evidence(EXAMPLE / "evidence", TERMS), "2026-10")
OCT_START, OCT_END = period_bounds(TERMS, "2026-10")
HOUR = 3600
LATE_ROW = "2026-10-31T20:10:00Z,N1,faulted"  # N1 reports every 30 minutes: a new instant


def report_of(service: Service, period: int = 0) -> dict:
    with service.engine.connect() as conn:
        return dict(conn.execute(select(db.reports).where(db.reports.c.period == period)).mappings().one())


def failures(service: Service) -> float:
    return sum(s.value for m in service.metrics.failures.collect() for s in m.samples if s.name.endswith("_total"))


def test_rows_inside_the_grace_are_in_the_closed_report(deployed, keystores, tmp_path):
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0")
    inbox = tmp_path / "node" / "inbox"
    now = [OCT_END + HOUR // 2]  # October is over, the 1 h grace is not
    service = Service(settings_from(cfg), clock=lambda: now[0])
    service.tick()
    assert service.status()[0]["reports"] == []
    (inbox / "events-late.csv").write_text(f"ts,device_id,state\n{LATE_ROW}\n")
    now[0] = OCT_END + HOUR + 1
    service.tick()

    expected_dir = tmp_path / "expected"
    shutil.copytree(EXAMPLE / "evidence", expected_dir)
    with (expected_dir / "events.csv").open("a") as f:
        f.write(LATE_ROW + "\n")
    expected = compute_period(TERMS, load_evidence(expected_dir, TERMS), "2026-10")
    assert expected.evidence_root != OCTOBER.evidence_root
    row = report_of(service)
    assert row["evidence_root"] == expected.evidence_root and row["state"] == "confirmed"
    logs = deployed.agreement.events.ReportAccepted().get_logs(from_block=0)
    assert logs[0]["args"]["evidenceRoot"] == bytes.fromhex(expected.evidence_root[2:])
    service.close()


def test_rows_after_the_close_are_quarantined_and_the_report_does_not_change(deployed, keystores, tmp_path):
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0")
    inbox = tmp_path / "node" / "inbox"
    service = Service(settings_from(cfg))
    service.tick()
    before = report_of(service)
    assert before["state"] == "confirmed" and before["evidence_root"] == OCTOBER.evidence_root

    (inbox / "events-after.csv").write_text(f"ts,device_id,state\n{LATE_ROW}\n2026-11-02T00:10:00Z,N1,faulted\n")
    service.tick()
    after = report_of(service)
    assert {k: after[k] for k in ("state", "evidence_root", "attainments", "bundle_id", "credit")} == \
        {k: before[k] for k in ("state", "evidence_root", "attainments", "bundle_id", "credit")}
    key = service.status()[0]["agreement"]
    [q] = quarantined(service.engine, key)
    assert (Path(q["file"]).name, q["line"], q["field"]) == ("events-after.csv", 2, "ts")
    assert "already closed" in q["reason"]
    assert service.metrics.registry.get_sample_value("slacomp_oracle_rows_late_total", {"agreement": key}) == 1
    with service.engine.connect() as conn:  # November's row is in
        assert conn.execute(select(func.count()).select_from(db.events).where(
            db.events.c.ts >= OCT_END)).scalar() == 1
    bundle = load_bundle(find_bundle(service.settings.bundle_store(), OCTOBER.evidence_root))
    assert recompute(bundle).attainments() == OCTOBER.attainments()
    service.close()


def test_rows_racing_the_close_are_never_accepted_and_left_out(deployed, keystores, tmp_path):
    """Rows that arrive between a bundle's export and the commit of the report naming it: the close
    is given up (EvidenceChanged) and done again with them. Rows whose ingest started before the
    report was stored but writes after: quarantined as late, whatever the caller thought frozen."""
    from oracle.node.close import prepare_close
    from oracle.node.errors import EvidenceChanged
    from oracle.store.ingest import ingest_rows

    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0", "oracle1"], submitter="submitter0")
    service = Service(settings_from(cfg), workers=0)
    service.tick(submit=False)  # inbox ingested; October closed and signed
    a = next(iter(service.served.values()))
    key, config = a.spec.key, a.config
    with service.engine.begin() as conn:  # start over with October open again
        conn.execute(db.signatures.delete())
        conn.execute(db.reports.delete())
    service._prepared[key, 0] = prepare_close(service.engine, service._close_job(a, config, 0))  # exported
    racing = {"ts": LATE_ROW.split(",")[0], "device_id": "N1", "state": "faulted"}
    assert ingest_rows(service.engine, TERMS, key, "events", [racing]).accepted == 1  # not frozen yet
    with pytest.raises(EvidenceChanged):
        service.close_period(a, config, 0)
    assert service.status()[0]["reports"] == []
    row = service.close_period(a, config, 0)  # again, with the row
    bundle = load_bundle(bundle_path(service.settings.bundle_store(), row["bundle_id"]))
    assert LATE_ROW.encode() in bundle.bundle.read("evidence/events.csv")
    assert row["evidence_root"] == recompute(bundle).evidence_root != OCTOBER.evidence_root

    late = {"ts": "2026-10-31T20:40:00Z", "device_id": "N1", "state": "available"}
    result = ingest_rows(service.engine, TERMS, key, "events", [late], frozen_before=None)  # a stale view
    assert (result.accepted, result.late, result.quarantined) == (0, 1, 1)
    assert "already closed" in quarantined(service.engine, key)[-1]["reason"]
    service.close()


# ------------------------------------------------------------------ fuzzed input files

_TOKENS = ["2026-10-05T10:00:00Z", "2026-10-05T10:00:00+02:00", "2026-13-40T99:00:00Z", "2026-10-05", "",
           "N1", "S2", "ghost", "north", "south", "mars", "available", "faulted", "AVAILABLE", "1", "0", "-3",
           "²", "1e3", "site:north", "device:N1", "*", "critical", "P1", '"', '""', "\x00", "\ufeff", " ",
           "\r", "é", "😀", "null", "{", "}", "[1]", '{"ts": 1}']
_HEADERS = {"devices": "device_id,site_id,weight,deployed_at,retired_at", "events": "ts,device_id,state",
            "exclusions": "start,end,scope,reason",
            "tickets": "ticket_id,site_id,severity,opened_at,responded_at,resolved_at"}
_cell = st.one_of(st.sampled_from(_TOKENS), st.text(string.printable, max_size=8))
_csv_line = st.lists(_cell, max_size=7).map(",".join)
_json_line = st.one_of(
    st.dictionaries(st.sampled_from(["ts", "device_id", "state", "site_id", "weight", "deployed_at", "start",
                                     "end", "scope", "ticket_id", "severity", "opened_at"]),
                    st.one_of(_cell, st.integers(), st.none(), st.lists(st.integers(), max_size=2)),
                    max_size=6).map(lambda d: __import__("json").dumps(d)),
    st.sampled_from(["{", "[]", "null", "1", '"x"', "{'a': 1}"]), _csv_line)


@st.composite
def malformed_files(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(_HEADERS)))
    suffix = draw(st.sampled_from([".csv", ".jsonl"]))
    if draw(st.integers(0, 5)) == 0:
        body = draw(st.binary(max_size=200))
    elif suffix == ".csv":
        header = draw(st.sampled_from([_HEADERS[kind], _HEADERS[kind].upper(), "a,b", ""]))
        body = "\n".join([header] + draw(st.lists(_csv_line, max_size=8))).encode("utf-8", "surrogatepass")
    else:
        body = "\n".join(draw(st.lists(_json_line, max_size=8))).encode("utf-8", "surrogatepass")
    return f"{kind}-fuzz{suffix}", body


@pytest.fixture
def running(deployed, keystores, tmp_path):
    """A node whose inbox holds the example's good files, ingested; the clock in mid-October
    (nothing is due), so each tick is ingest + checks."""
    cfg = write_config(tmp_path, deployed, keystores, keys=["oracle0"], submitter="submitter0")
    service = Service(settings_from(cfg), clock=lambda: OCT_START + 14 * 24 * HOUR)
    service.tick()
    yield service, tmp_path / "node" / "inbox"
    service.close()


def _good_counts(service: Service) -> dict[str, int]:
    with service.engine.connect() as conn:
        good = select(db.sources.c.id).where(db.sources.c.name.not_like("%fuzz%"))
        return {t.name: conn.execute(select(func.count()).select_from(t).where(t.c.source_id.in_(good))).scalar()
                for t in (db.devices, db.events, db.exclusions)}


def test_malformed_files_are_explained_and_change_nothing_else(running):
    service, inbox = running
    good = _good_counts(service)
    assert good["events"] > 10_000 and failures(service) == 0
    n = [0]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
    @given(malformed_files())
    def one(file: tuple[str, bytes]) -> None:
        n[0] += 1
        name, body = file
        path = inbox / (name.replace("-fuzz", f"-fuzz{n[0]:03d}"))
        path.write_bytes(body)
        service.tick()  # never raises; a failure would be logged and counted
        assert failures(service) == 0
        assert _good_counts(service) == good
        with service.engine.connect() as conn:
            # the same content under another name was skipped: it is the earlier file's source
            src = conn.execute(select(db.sources).where(db.sources.c.kind == name.split("-")[0],
                                                        db.sources.c.sha256 == hashlib.sha256(body).hexdigest())
                               ).mappings().one()
            problems = conn.execute(select(db.quarantine).where(
                db.quarantine.c.source_id == src["id"])).mappings().all()
            assert len(problems) == src["quarantined"]
            for q in problems:
                assert q["line"] >= 1 and q["field"] and q["reason"]
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
        path.unlink()

    one()
    with service.engine.connect() as conn:
        assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
