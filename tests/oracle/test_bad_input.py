"""Bad evidence and terms: every error names file, line and field; the CLI prints it without
a traceback, exits 2 and prints no result."""
from __future__ import annotations

from pathlib import Path

import pytest

from oracle.core.terms import TermsError, parse_terms
from oracle.evidence.load import EvidenceError, InvalidEvidence, load_evidence
from slacomp.cli import main
from tests.oracle.conftest import UPTIME, site, terms_text, write_evidence

TERMS = terms_text([site("north"), site("south")], (UPTIME,))
DEV = [("d1", "north", 1, "2026-01-01T00:00:00Z", ""), ("d2", "south", 2, "2026-01-01T00:00:00Z", "")]
OK_EVENT = ("2026-10-01T00:00:00Z", "d1", "available")


def _errors(tmp_path: Path, **kw: object) -> list[tuple[str, int, str]]:
    kw.setdefault("devices", DEV)
    kw.setdefault("events", [OK_EVENT])
    folder = write_evidence(tmp_path / "ev", **kw)  # type: ignore[arg-type]
    with pytest.raises(EvidenceError) as info:
        load_evidence(folder, parse_terms(TERMS))
    errs = info.value.errors if isinstance(info.value, InvalidEvidence) else [info.value]
    return [(e.file, e.line, e.field) for e in errs]


@pytest.mark.parametrize("row,field", [
    (("2026-10-01T00:00:00", "d1", "available"), "ts"),  # no offset
    (("2026-10-32T00:00:00Z", "d1", "available"), "ts"),
    (("yesterday", "d1", "available"), "ts"),
    (("2026-10-01T00:00:00Z", "d9", "available"), "device_id"),
    (("2026-10-01T00:00:00Z", "d1", "broken"), "state"),
])
def test_bad_event_rows_name_file_line_field(tmp_path: Path, row: tuple[str, str, str], field: str) -> None:
    assert _errors(tmp_path, events=[OK_EVENT, row]) == [("events.csv", 3, field)]


def test_all_bad_rows_are_reported_together(tmp_path: Path) -> None:
    rows = [OK_EVENT, ("x", "d1", "available"), OK_EVENT, ("2026-10-01T00:00:00Z", "zz", "nope")]
    assert _errors(tmp_path, events=rows) == [("events.csv", 3, "ts"), ("events.csv", 5, "device_id"),
                                              ("events.csv", 5, "state")]


def test_ragged_row(tmp_path: Path) -> None:
    folder = write_evidence(tmp_path / "ev", DEV, [OK_EVENT])
    (folder / "events.csv").write_text("ts,device_id,state\n2026-10-01T00:00:00Z,d1\n")
    with pytest.raises(EvidenceError) as info:
        load_evidence(folder, parse_terms(TERMS))
    assert (info.value.file, info.value.line, info.value.field) == ("events.csv", 2, "state")


def test_missing_column(tmp_path: Path) -> None:
    folder = write_evidence(tmp_path / "ev", DEV, [OK_EVENT])
    (folder / "events.csv").write_text("ts,device\n")
    with pytest.raises(EvidenceError) as info:
        load_evidence(folder, parse_terms(TERMS))
    assert (info.value.file, info.value.line) == ("events.csv", 1)
    assert {e.field for e in info.value.errors} == {"device_id", "state"}  # type: ignore[attr-defined]


def test_conflicting_states_name_both_lines_and_duplicates_are_ignored(tmp_path: Path) -> None:
    rows = [OK_EVENT, OK_EVENT, ("2026-10-01T01:00:00+01:00", "d1", "faulted")]
    errs = _errors(tmp_path, events=rows)
    assert errs == [("events.csv", 4, "state")]
    folder = write_evidence(tmp_path / "ok", DEV, [OK_EVENT, OK_EVENT])
    assert len(load_evidence(folder, parse_terms(TERMS)).ev_ts) == 1


@pytest.mark.parametrize("row,field", [
    (("d3", "west", 1, "2026-01-01T00:00:00Z", ""), "site_id"),
    (("d3", "north", 0, "2026-01-01T00:00:00Z", ""), "weight"),
    (("d3", "north", 1, "2026-01-01", ""), "deployed_at"),
    (("d3", "north", 1, "2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"), "retired_at"),
    (("d1", "north", 1, "2026-01-02T00:00:00Z", ""), "device_id"),  # duplicate
])
def test_bad_device_rows(tmp_path: Path, row: tuple[object, ...], field: str) -> None:
    assert _errors(tmp_path, devices=DEV + [row]) == [("devices.csv", 4, field)]


@pytest.mark.parametrize("row,field", [
    (("2026-10-02T00:00:00Z", "2026-10-01T00:00:00Z", "*", "r"), "end"),
    (("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z", "site:west", "r"), "scope"),
    (("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z", "device:d9", "r"), "scope"),
    (("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z", "everything", "r"), "scope"),
])
def test_bad_exclusions(tmp_path: Path, row: tuple[str, ...], field: str) -> None:
    assert _errors(tmp_path, exclusions=[row]) == [("exclusions.csv", 2, field)]


def test_bad_ticket(tmp_path: Path) -> None:
    rows = [("T1", "west", "P1", "2026-10-01T00:00:00Z", "", "")]
    assert _errors(tmp_path, tickets=rows) == [("tickets.csv", 2, "site_id")]


@pytest.mark.parametrize("old,new,field", [
    ("kpi: device_uptime", "kpi: device_uptimes", "objectives[0].kpi"),
    ("{below_bps: 9900, credit_bps: 1000}, {below_bps: 9500", "{below_bps: 9500, credit_bps: 1000}, {below_bps: 9900",
     "objectives[0].credits[1].below_bps"),
    ("agreement: acme-ev-2026\n", "", "agreement"),
    ('monthly_fee: "5000"', 'monthly_fee: "5000.0000001"', "monthly_fee"),
    ('monthly_fee: "5000"', "monthly_fee: 5000.5", "monthly_fee"),
    ("stale_after: 40d", "stale_after: 40 days", "telemetry.stale_after"),
    ("timezone: Europe/London", "timezone: Europe/Lndon", "timezone"),
    ("target_bps: 9900", "target_bps: 9900, targt: 1", "objectives[0].targt"),
    ('term: {first_period: "2026-10", periods: 12}', 'term: {first_period: "2026-13", periods: 12}',
     "term.first_period"),
    ("scope: estate", "scope: per_device, device_fee: 1.5", "objectives[0].device_fee"),
])
def test_terms_errors_name_the_field(old: str, new: str, field: str) -> None:
    assert old in TERMS
    with pytest.raises(TermsError) as info:
        parse_terms(TERMS.replace(old, new))
    assert info.value.field == field


def test_business_hours_errors() -> None:
    for hours, field in [('{mon-fri: "18:00-08:00"}', "sites[0].business_hours.mon-fri"),
                         ('{funday: "08:00-18:00"}', "sites[0].business_hours.funday"),
                         ('{mon: ["08:00-12:00", "25:00-26:00"]}', "sites[0].business_hours.mon[1]")]:
        with pytest.raises(TermsError) as info:
            parse_terms(terms_text([site("s", hours)], (UPTIME,)))
        assert info.value.field == field


def test_cli_prints_errors_without_traceback_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "terms.yaml").write_text(TERMS)
    write_evidence(tmp_path / "ev", DEV, [OK_EVENT, ("2026-10-01T00:00:00", "d1", "available")])
    code = main(["kpi", str(tmp_path / "terms.yaml"), "--evidence", str(tmp_path / "ev"), "--period", "2026-10"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "events.csv:3: ts:" in err and "Traceback" not in err
    code = main(["kpi", str(tmp_path / "terms.yaml"), "--evidence", str(tmp_path / "ev"), "--period", "2030-01"])
    assert code == 2


def test_cli_rejects_period_outside_term(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "terms.yaml").write_text(TERMS)
    write_evidence(tmp_path / "ev", DEV, [OK_EVENT])
    assert main(["kpi", str(tmp_path / "terms.yaml"), "--evidence", str(tmp_path / "ev"), "--period", "2030-01"]) == 2
    assert "outside the term" in capsys.readouterr().err
