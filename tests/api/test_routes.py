"""What each route answers, checked against the engine and the chain: month-to-date status,
reports, payouts, evidence bundles, agreement creation, telemetry ingest, and bad input."""
from __future__ import annotations

from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from oracle.chain.abi import contract
from oracle.chain.config import config_from_terms
from oracle.chain.tx import create_agreement, deposit
from oracle.core.terms import load_terms
from oracle.engine.kpi import compute_period
from oracle.engine.replay import recompute
from oracle.evidence.bundle import bundle_path, load_bundle
from oracle.evidence.csv import parse_ts_text
from oracle.evidence.load import load_evidence

from .conftest import AS_OF, EXAMPLE, ORACLES, TERMS, get_json


def test_status_is_the_engines_month_to_date(client, world):
    s = get_json(client, f"/v1/agreements/{world.agreement}/status?as_of={AS_OF}", "customer", world)
    terms = load_terms(TERMS)
    engine = compute_period(terms, load_evidence(EXAMPLE / "evidence", terms), "2026-10", as_of=parse_ts_text(AS_OF))
    assert s["label"] == "2026-10" and s["as_of"] == AS_OF and s["evidence_root"] == engine.evidence_root
    for o_api, o in zip(s["objectives"], engine.objectives, strict=True):
        for r_api, r in zip(o_api["results"], o.results, strict=True):
            assert (r_api["subject"], r_api["attainment_bps"], r_api["budget_s"], r_api["burn_rate"]) == (
                r.subject, r.attainment_bps, r.budget_s, r.burn_rate)
    north = s["objectives"][0]["results"][0]
    assert north["subject"] == "north" and north["attainment_bps"] == 7887 and north["state"] == "red"
    assert s["state"] == "red" and s["credit_so_far"] == {"raw": "2750000000", "units": "2750.000000"}
    south = s["objectives"][0]["results"][1]
    assert south["state"] == "green" and south["budget_left_pct"] == 100.0
    assert s["settled"][0]["label"] == "2026-10" and s["settled"][0]["paid"]["units"] == "2750.000000"


def test_burn_series_ends_at_the_status_figures(client, world):
    b = get_json(client, f"/v1/agreements/{world.agreement}/status/burn?as_of={AS_OF}", "auditor", world)
    s = get_json(client, f"/v1/agreements/{world.agreement}/status?as_of={AS_OF}", "auditor", world)
    assert b["marks"][-1] == AS_OF and len(b["marks"]) == 20  # 19 local midnights after 1 Oct, then as_of
    for ob, os_ in zip(b["objectives"], s["objectives"], strict=True):
        for series, r in zip(ob["series"], os_["results"], strict=True):
            assert series["bad_s"][-1] == r["bad_s"] and series["bad_s"] == sorted(series["bad_s"])
            assert series["budget_total_s"] == r["budget_total_s"]


def test_reports_carry_payload_signatures_and_event(client, world):
    [rep] = get_json(client, f"/v1/agreements/{world.agreement}/reports", "customer", world)
    assert rep["period"] == 0 and rep["label"] == "2026-10" and rep["credit"]["units"] == "2750.000000"
    assert len(rep["signatures"]) == 2 and all(s["signer"] for s in rep["signatures"])
    detail = get_json(client, f"/v1/agreements/{world.agreement}", "customer", world)
    assert {s["signer"] for s in rep["signatures"]} <= set(detail["oracles"]["oracles"])
    assert rep["event"]["name"] == "ReportAccepted" and rep["tx_hash"].startswith("0x") and rep["block"] > 0
    assert rep["payload"]["evidenceRoot"] == rep["event"]["args"]["evidenceRoot"]


def test_payouts_in_token_units(client, world):
    [p] = get_json(client, f"/v1/agreements/{world.agreement}/payouts", "vendor", world)
    assert (p["kind"], p["period"], p["amount"]["units"], p["to"]) == ("paid", 0, "2750.000000", world.customer)


def test_detail_has_parties_escrow_oracles_terms_and_schedule(client, world):
    d = get_json(client, f"/v1/agreements/{world.agreement}", "auditor", world)
    assert (d["vendor"], d["customer"]) == (world.vendor, world.customer)
    assert d["asset"]["symbol"] == "USDC" and d["asset"]["decimals"] == 6
    assert d["oracles"]["threshold"] == 2 and len(d["oracles"]["oracles"]) == 3
    assert d["terms"]["agreement"] == "acme-ev-2026" and d["next_period"] == 1 and d["period_count"] == 3
    assert [p["label"] for p in d["schedule"]["periods"]] == ["2026-10", "2026-11", "2026-12"]
    assert int(d["escrow_balance"]["raw"]) >= int(d["reserve"]["raw"])


def test_evidence_bundle_of_the_settled_period_recomputes_the_report(client, world, tmp_path):
    r = client.get(f"/v1/agreements/{world.agreement}/periods/0/evidence", headers=world.headers("auditor"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    saved = tmp_path / r.headers["content-disposition"].split('filename="')[1].rstrip('"')
    saved.write_bytes(r.content)
    loaded = load_bundle(saved)  # the bundle file as the oracle stored it, checked member by member
    assert r.content == bundle_path(world.settings.data_dir / "bundles", loaded.bundle.id).read_bytes()
    result = recompute(loaded)
    [rep] = get_json(client, f"/v1/agreements/{world.agreement}/reports", "auditor", world)
    assert result.evidence_root == rep["payload"]["evidenceRoot"] and result.total_credit == int(rep["credit"]["raw"])
    assert client.get(f"/v1/agreements/{world.agreement}/periods/1/evidence",
                      headers=world.headers("auditor")).status_code == 404  # not closed yet


def test_vendor_creates_an_agreement_through_the_factory(client, world):
    body = {"terms": TERMS.read_text(), "customer": world.other_customer, "oracles": ORACLES[:2],
            "threshold": 2}
    r = client.post("/v1/agreements", json=body, headers=world.headers("vendor"))
    assert r.status_code == 201, r.text
    created = r.json()
    d = get_json(client, f"/v1/agreements/{created['address']}", "other_customer", world)
    assert (d["vendor"], d["customer"]) == (world.vendor, world.other_customer)
    assert d["terms"] is not None and d["terms_hash"] == created["terms_hash"]
    listed = client.get(f"/v1/agreements?vendor={world.vendor}", headers=world.headers("auditor")).json()
    assert created["address"] in {a["address"] for a in listed}


def test_create_with_an_impossible_threshold_names_the_field(client, world):
    body = {"terms": TERMS.read_text(), "customer": world.customer, "oracles": [world.vendor], "threshold": 3}
    r = client.post("/v1/agreements", json=body, headers=world.headers("vendor"))
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "threshold"


def test_ingest_json_and_csv_with_per_row_errors(client, world):
    url = f"/v1/agreements/{world.agreement}/telemetry/events"
    rows = [{"ts": "2026-12-03T10:00:00Z", "device_id": "N2", "state": "available"},
            {"ts": "2026-12-03T10:00:00Z", "device_id": "N9", "state": "available"},
            {"ts": "2026-12-03T11:00:00Z", "device_id": "N2", "state": "exploded"}]
    out = client.post(url, json={"rows": rows}, headers=world.headers("vendor")).json()
    assert (out["rows"], out["accepted"], out["quarantined"]) == (3, 1, 2)
    assert [(e["row"], e["field"]) for e in out["errors"]] == [(2, "device_id"), (3, "state")]
    csv_body = ("ts,device_id,state\n2026-12-04T10:00:00Z,N3,faulted\n2026-12-04T11:00:00Z,N3\n"
                "not-a-time,N3,available\n")
    r = client.post(url, content=csv_body, headers=world.headers("vendor") | {"Content-Type": "text/csv"})
    out = r.json()
    assert r.status_code == 200 and (out["rows"], out["accepted"]) == (3, 1)
    assert [(e["row"], e["field"]) for e in out["errors"]] == [(2, "(row)"), (3, "ts")]
    again = client.post(url, content=csv_body, headers=world.headers("vendor") | {"Content-Type": "text/csv"}).json()
    assert again["skipped"] is True  # the same batch twice is ingested once
    inv = client.post(f"/v1/agreements/{world.agreement}/telemetry/inventory", headers=world.headers("vendor"),
                      json=[{"device_id": "N9", "site_id": "north", "deployed_at": "2026-12-01T00:00:00Z"}]).json()
    assert inv["accepted"] == 1 and inv["released"] == 1  # the quarantined N9 event got in


def test_ingest_limits_give_413(world):
    small = replace(world.settings, max_body_bytes=2_000, max_batch_rows=5)
    with TestClient(create_app(small)) as c:
        url = f"/v1/agreements/{world.agreement}/telemetry/events"
        rows = [{"ts": f"2026-12-05T10:0{i}:00Z", "device_id": "N1", "state": "available"} for i in range(6)]
        assert c.post(url, json=rows, headers=world.headers("vendor")).status_code == 413
        big = "ts,device_id,state\n" + "2026-12-05T10:00:00Z,N1,available\n" * 100
        r = c.post(url, content=big, headers=world.headers("vendor") | {"Content-Type": "text/csv"})
        assert r.status_code == 413 and "limit" in r.json()["detail"]


@pytest.mark.parametrize("body,ctype,code", [
    (b"{not json", "application/json", 422), (b'{"rows": 3}', "application/json", 422),
    (b"[]", "application/json", 422), (b"<xml/>", "application/xml", 415), (b"", "text/csv", 422)])
def test_bad_ingest_bodies(client, world, body, ctype, code):
    r = client.post(f"/v1/agreements/{world.agreement}/telemetry/events", content=body,
                    headers=world.headers("vendor") | {"Content-Type": ctype})
    assert r.status_code == code, r.text


def test_invalid_terms_get_422_with_the_field(client, world):
    bad = TERMS.read_text().replace("target_bps: 9000", "target_bps: 20000", 1)
    r = client.post("/v1/terms/validate", json={"terms": bad}, headers=world.headers("customer"))
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "objectives[0].target_bps"
    good = client.post("/v1/terms/validate", json={"terms": TERMS.read_text()}, headers=world.headers("customer"))
    assert good.json()["terms_hash"] == "0x8a0a653963fc7c9e1f4b2c9b88de5d3cc1a52f5fd0022c3885b16e23d2e4a46f"
    r = client.post("/v1/terms/validate", json={"text": "x"}, headers=world.headers("customer"))
    assert r.status_code == 422 and r.json()["detail"][0]["field"] in ("terms", "text")


def test_terms_of_another_agreement_are_refused(client, world):
    other = TERMS.read_text().replace('monthly_fee: "5000"', 'monthly_fee: "5001"')
    r = client.put(f"/v1/agreements/{world.agreement}/terms", json={"terms": other}, headers=world.headers("vendor"))
    assert r.status_code == 409 and "hash" in r.json()["detail"]


@pytest.mark.parametrize("path,code", [
    ("/v1/agreements/0xnot-an-address", 422), ("/v1/agreements/0x" + "12" * 20, 404),
    ("/v1/agreements/0x" + "12" * 20 + "/status", 404), ("/v1/agreements/{agreement}/status?as_of=yesterday", 422),
    ("/v1/agreements/{agreement}/status?as_of=2026-10-20T00:00:00", 422),
    ("/v1/agreements/{agreement}/status?as_of=2020-01-01T00:00:00Z", 409),
    ("/v1/agreements/{agreement}/periods/7/evidence", 404), ("/v1/agreements/{agreement}/periods/-1/evidence", 422),
    ("/v1/agreements?vendor=nobody", 422)])
def test_bad_requests(client, world, path, code):
    r = client.get(path.format(agreement=world.agreement), headers=world.headers("auditor"))
    assert r.status_code == code, r.text
    if code == 422:
        assert r.json()["detail"][0]["loc"]


def test_a_contract_that_is_not_an_agreement_is_404(client, world):
    detail = get_json(client, f"/v1/agreements/{world.agreement}", "auditor", world)
    r = client.get(f"/v1/agreements/{detail['asset']['address']}", headers=world.headers("auditor"))
    assert r.status_code == 404 and "not a slacomp agreement" in r.json()["detail"]


def test_an_agreement_whose_logs_lack_its_config_is_502_naming_the_hash(world):
    """The view reads the Config whose hash is in storage from the logs, and falls back to no other."""
    terms = load_terms(TERMS)
    config = config_from_terms(terms, customer=world.other_customer, asset="0x" + "00" * 20,
                               oracles=ORACLES[:2], threshold=1)
    agreement, _ = create_agreement(world.w3, contract(world.w3, "AgreementFactory", world.factory),
                                    world.other_vendor, config, customer=world.other_customer)
    slot = next(i for i in range(16) if bytes(world.w3.eth.get_storage_at(agreement.address, i)) == config.hash())
    other = "0x" + "ab" * 32
    world.w3.provider.make_request("anvil_setStorageAt", [agreement.address, hex(slot), other])
    with TestClient(create_app(world.settings)) as c:
        r = c.get(f"/v1/agreements/{agreement.address}", headers=world.headers("auditor"))
    assert r.status_code == 502 and f"configHash {other}" in r.json()["detail"], r.text
    assert agreement.address in r.json()["detail"]


def test_status_without_registered_terms_is_409_naming_the_fix(client, world):
    r = client.get(f"/v1/agreements/{world.other}/status", headers=world.headers("other_customer"))
    assert r.status_code in (200, 409)  # 200 once another test registered the terms
    if r.status_code == 409:
        assert "/terms" in r.json()["detail"]


def test_chain_reads_are_refreshed_on_a_new_block(client, world):
    d0 = get_json(client, f"/v1/agreements/{world.agreement}", "vendor", world)
    agreement = contract(world.w3, "Agreement", world.agreement)
    token = contract(world.w3, "TestToken", d0["asset"]["address"])
    token.functions.mint(world.vendor, 10**6).transact({"from": world.vendor})
    deposit(world.w3, agreement, world.vendor, 10**6)
    d1 = get_json(client, f"/v1/agreements/{world.agreement}", "vendor", world)
    assert int(d1["escrow_balance"]["raw"]) == int(d0["escrow_balance"]["raw"]) + 10**6


def test_chain_down_is_503_and_the_service_stays_up(world):
    dead = replace(world.settings, rpc_url="http://127.0.0.1:9", rpc_timeout_s=1.0)
    with TestClient(create_app(dead)) as c:
        for path in ("/v1/agreements", f"/v1/agreements/{world.agreement}",
                     f"/v1/agreements/{world.agreement}/status?as_of={AS_OF}"):
            r = c.get(path, headers=world.headers("auditor"))
            assert r.status_code == 503 and "chain unreachable" in r.json()["detail"], r.text
        ready = c.get("/ready")
        assert ready.status_code == 503 and ready.json()["chain"]["ok"] is False and ready.json()["database"]["ok"]
        assert c.get("/health").status_code == 200
