"""Terms normalisation and hashing, the columnar CSV reader against the exact parser, the
evidence Merkle root and proofs, and the CLI's JSON."""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from oracle.core.merkle import leaf_hash, merkle_proof, merkle_root, verify_proof
from oracle.core.period import period_bounds, period_labels
from oracle.core.terms import TermsError, canonical_bytes, parse_terms, terms_hash
from oracle.evidence.commitment import evidence_leaves
from oracle.evidence.csv import parse_ts_text, read_raw
from oracle.evidence.load import EvidenceError, load_evidence
from slacomp.cli import main
from tests.oracle.conftest import UPTIME, site, terms_text, write_evidence

SPEC_EXAMPLE = """\
schema: slacomp/v1
agreement: acme-ev-2026
timezone: Europe/London            # calendar-month periods start at local midnight on the 1st
currency: {symbol: USDC, decimals: 6}
monthly_fee: "5000"                # decimal strings for money
telemetry:
  stale_after: 15m
  missing_data: down
  maintenance_state: exclude
exclusion_mode: remove
sites:
  - id: north
    timezone: Europe/London
    business_hours: {mon-fri: "08:00-18:00", sat: ["09:00-12:00", "13:00-15:15"]}
    fee: "1000"
objectives:
  - {id: avail, kpi: site_availability, scope: per_site, min_available: 1,
     target_bps: 9000, credits: [{below_bps: 9000, credit_bps: 10000}]}
  - {id: maxdown, kpi: site_max_down, scope: per_site, max_down: 1,
     target_bps: 9500, credits: [{below_bps: 9500, credit_bps: 2500}]}
  - {id: uptime, kpi: device_uptime, scope: estate,
     target_bps: 9900, credits: [{below_bps: 9900, credit_bps: 1000}, {below_bps: 9500, credit_bps: 3000}]}
credit_cap_bps: 10000
term: {first_period: "2026-10", periods: 12}
"""

# The same meaning written differently: defaults spelled out or left out, other key order,
# durations and money in other notations, hours split and listed per day.
EQUIVALENT = """\
term: {periods: 12, first_period: "2026-10"}
credit_cap_bps: 10000
objectives:
  - {id: avail, kpi: site_availability, scope: per_site, target_bps: 9000,
     credits: [{credit_bps: 10000, below_bps: 9000}], device_fee: "0"}
  - {id: maxdown, kpi: site_max_down, scope: per_site, max_down: 1,
     target_bps: 9500, credits: [{below_bps: 9500, credit_bps: 2500}]}
  - {id: uptime, kpi: device_uptime, scope: estate,
     target_bps: 9900, credits: [{below_bps: 9900, credit_bps: 1000}, {below_bps: 9500, credit_bps: 3000}]}
sites:
  - id: north
    fee: "1000.000000"
    business_hours: {"mon,tue,wed": "08:00-18:00", thu-fri: ["08:00-13:00", "12:00-18:00"],
                     sat: ["13:00-15:15", "09:00-12:00"], sun: []}
exclusion_mode: remove
telemetry: {stale_after: 900}
monthly_fee: 5000
currency: {decimals: 6, symbol: USDC}
timezone: Europe/London
agreement: acme-ev-2026
schema: slacomp/v1
"""


def test_equivalent_terms_hash_the_same() -> None:
    a, b = parse_terms(SPEC_EXAMPLE), parse_terms(EQUIVALENT)
    assert canonical_bytes(a) == canonical_bytes(b)
    assert terms_hash(a) == terms_hash(b)
    assert terms_hash(a).startswith("0x") and len(terms_hash(a)) == 66
    assert b" " not in canonical_bytes(a)


@pytest.mark.parametrize("old,new", [
    ('monthly_fee: "5000"', 'monthly_fee: "5000.000001"'),
    ("stale_after: 15m", "stale_after: 16m"),
    ('"13:00-15:15"', '"13:00-15:16"'),
    ("missing_data: down", "missing_data: up"),
    ("periods: 12", "periods: 13"),
    ("credit_bps: 3000", "credit_bps: 3001"),
    ("min_available: 1,", "min_available: 2,"),
    ("    timezone: Europe/London\n", "    timezone: Europe/Dublin\n"),
])
def test_any_change_of_meaning_changes_the_hash(old: str, new: str) -> None:
    assert old in SPEC_EXAMPLE
    assert terms_hash(parse_terms(SPEC_EXAMPLE.replace(old, new))) != terms_hash(parse_terms(SPEC_EXAMPLE))


def test_parsed_model_and_periods() -> None:
    t = parse_terms(SPEC_EXAMPLE)
    assert (t.monthly_fee, t.sites[0].fee, t.stale_after, t.decimals) == (5000 * 10**6, 1000 * 10**6, 900, 6)
    assert t.sites[0].business_hours[5] == ((540, 720), (780, 915))
    assert t.objectives[2].tiers == ((9900, 1000), (9500, 3000))
    labels = period_labels(t)
    assert labels[0] == "2026-10" and labels[-1] == "2027-09" and len(labels) == 12
    bounds = [period_bounds(t, p) for p in labels]
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # contiguous


def _fmt(t: int, style: int) -> str:
    dt = datetime.fromtimestamp(t, timezone.utc)
    if style == 0:
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    offset = timedelta(minutes=random.Random(t).choice([-600, -210, 0, 330, 345, 780]))
    local = dt.astimezone(timezone(offset))
    if style == 1:
        return local.isoformat()
    return local.strftime("%Y-%m-%dT%H:%M:%S") + ".123" + local.strftime("%z")  # slow path


def test_vectorised_reader_agrees_with_exact_parser(tmp_path: Path) -> None:
    rng = random.Random(7)
    ts = [rng.randrange(0, 2**32) for _ in range(60_000)]  # above the vectorised threshold
    texts = [_fmt(t, rng.randrange(3)) for t in ts]
    texts[123] = "2026-02-29T00:00:00Z"  # not a leap year
    texts[456] = "2026-10-01T00:00:00"  # no offset
    path = tmp_path / "x.csv"
    path.write_text("ts,n\n" + "".join(f"{s},{i}\n" for i, s in enumerate(texts)))
    raw = read_raw(path, ["ts"])
    got, bad = raw.timestamps(0)
    assert bad.nonzero()[0].tolist() == [123, 456]
    for i in range(len(texts)):
        if i not in (123, 456):
            assert got[i] == parse_ts_text(texts[i]) == ts[i]


def test_large_file_errors_keep_line_numbers(tmp_path: Path) -> None:
    terms = parse_terms(terms_text([site("s")], (UPTIME,)))
    rows = [(f"2026-10-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z", f"d{i % 2}", "available") for i in range(3600)] * 20
    rows = [(f"2026-{1 + k // 3600 % 12:02d}-{1 + k // 43200:02d}T{r[0][11:]}", r[1], r[2]) for k, r in enumerate(rows)]
    rows[70_000 - 2] = ("2026-10-01T00:00:00Z", "d7", "available")
    folder = write_evidence(tmp_path / "ev", [("d0", "s", 1, "2026-01-01T00:00:00Z", ""),
                                              ("d1", "s", 1, "2026-01-01T00:00:00Z", "")], rows[:70_000])
    with pytest.raises(EvidenceError) as info:
        load_evidence(folder, terms)
    assert (info.value.file, info.value.line, info.value.field) == ("events.csv", 70_000, "device_id")


def test_merkle_proofs_verify_and_tampering_fails() -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(7)]
    root = merkle_root(leaves)
    for i in range(7):
        assert verify_proof(merkle_proof(leaves, i), root, leaves[i])
    assert not verify_proof(merkle_proof(leaves, 0), root, leaf_hash(b"forged"))
    assert merkle_root([]) == b"\0" * 32 and merkle_root(leaves[:1]) == leaves[0]


def test_evidence_root_commits_to_device_rows_and_proves_one_device(tmp_path: Path) -> None:
    terms = parse_terms(terms_text([site("s")], (UPTIME,)))
    devs = [("a", "s", 1, "2026-01-01T00:00:00Z", ""), ("b", "s", 1, "2026-01-01T00:00:00Z", "")]
    events = [("2026-10-02T00:00:00Z", "a", "available"), ("2026-10-03T00:00:00Z", "b", "faulted"),
              ("2026-11-05T00:00:00Z", "b", "available")]  # after the period: not used, not committed
    ev = load_evidence(write_evidence(tmp_path / "1", devs, events), terms)
    start, end = period_bounds(terms, "2026-10")
    leaves = evidence_leaves(terms, ev, start, end)
    assert leaves.names == ("device:a", "device:b")
    assert verify_proof(leaves.proof("device:b"), leaves.root, leaves.hashes[1])
    later = load_evidence(write_evidence(tmp_path / "2", devs, events[:2]), terms)
    assert evidence_leaves(terms, later, start, end).root == leaves.root
    changed = load_evidence(write_evidence(tmp_path / "3", devs, [events[0], ("2026-10-03T00:00:01Z", "b", "faulted")]),
                            terms)
    assert evidence_leaves(terms, changed, start, end).root != leaves.root


def test_cli_kpi_json_and_month_to_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "terms.yaml").write_text(SPEC_EXAMPLE.replace("stale_after: 15m", "stale_after: 40d"))
    write_evidence(tmp_path / "ev", [("c1", "north", 1, "2026-01-01T00:00:00Z", "")],
                   [("2026-10-01T00:00:00+01:00", "c1", "available")])
    args = ["kpi", str(tmp_path / "terms.yaml"), "--evidence", str(tmp_path / "ev"), "--period", "2026-10"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["period"] == {"label": "2026-10", "start": "2026-09-30T23:00:00Z", "end": "2026-11-01T00:00:00Z"}
    assert [o["id"] for o in doc["objectives"]] == ["avail", "maxdown", "uptime"]
    avail = doc["objectives"][0]["results"][0]
    # 22 weekdays * 10 h + 5 Saturdays * 5.25 h, up all month
    assert avail == {"subject": "north", "good_s": 886_500, "counted_s": 886_500, "attainment_bps": 10_000,
                     "met": True, "credit": "0"}
    assert doc["total_credit"] == "0" and doc["evidence_root"].startswith("0x")
    assert main(args + ["--as-of", "2026-10-02T00:00:00+01:00"]) == 0
    mtd = json.loads(capsys.readouterr().out)["objectives"][0]["results"][0]
    assert ((mtd["counted_s"], mtd["expected_counted_s"], mtd["budget_s"], mtd["burn_rate"])
            == (36_000, 886_500, 88_650, 0.0))
    assert main(args + ["--format", "table"]) == 0
    assert "acme-ev-2026" in capsys.readouterr().out


@pytest.mark.parametrize("text", [
    "ts,device_id,state\r\n2026-10-01T00:00:00Z,a,available\r\n2026-10-03T00:00:00Z,b,faulted\r\n",  # CRLF
    # BOM, blank, no EOL
    "\ufeffts,device_id,state\n2026-10-01T00:00:00Z,a,available\n\n2026-10-03T00:00:00Z,b,faulted",
    'state,ts,device_id\n"available",2026-10-01T00:00:00Z,"a"\nfaulted,"2026-10-03T00:00:00Z",b\n',  # quoted, reordered
])
def test_csv_dialects_read_the_same(tmp_path: Path, text: str) -> None:
    terms = parse_terms(terms_text([site("s")], (UPTIME,)))
    devs = [("a", "s", 1, "2026-01-01T00:00:00Z", ""), ("b", "s", 1, "2026-01-01T00:00:00Z", "")]
    folder = write_evidence(tmp_path / "ev", devs, [])
    (folder / "events.csv").write_bytes(text.encode())
    ev = load_evidence(folder, terms)
    assert ev.ev_device.tolist() == [0, 1] and ev.ev_state.tolist() == [0, 2]
    assert ev.ev_ts.tolist() == [parse_ts_text("2026-10-01T00:00:00Z"), parse_ts_text("2026-10-03T00:00:00Z")]


def test_status_map_overrides_a_table_and_names_a_bad_key() -> None:
    from oracle.core.status_maps import UnknownStatus, state_of, tables_of
    plain = parse_terms(SPEC_EXAMPLE)
    changed = parse_terms(SPEC_EXAMPLE.replace("  missing_data: down\n",
                                        "  missing_data: down\n  status_map: {ocpp16: {SuspendedEVSE: faulted}}\n"))
    assert plain.status_map == () and terms_hash(changed) != terms_hash(plain)
    tables = tables_of(changed.status_map)
    assert state_of(tables["ocpp16"], "ocpp16", "SuspendedEVSE") == "faulted"
    assert state_of(tables_of(())["ocpp16"], "ocpp16", "SuspendedEVSE") == "in_use"
    assert state_of(tables["ocpi221"], "ocpi221", "BLOCKED") == "unknown"
    with pytest.raises(UnknownStatus, match="'Parked'"):
        state_of(tables["ocpp201"], "ocpp201", "Parked")
    with pytest.raises(TermsError, match=r"telemetry.status_map.ocpp16.Faulted: 'broken' is not one of"):
        parse_terms(SPEC_EXAMPLE.replace("  missing_data: down\n",
                                  "  missing_data: down\n  status_map: {ocpp16: {Faulted: broken}}\n"))
