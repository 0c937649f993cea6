"""The role x endpoint matrix: every role (and no key) against every route, each forbidden pair
included, and every write audit-logged."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, select

from api.auth import api_audit

from .conftest import AS_OF, ORACLES, TERMS

ROLES = ("vendor", "customer", "auditor", "other_vendor", "other_customer", None, "bogus")
READS = ("", "/status?as_of=" + AS_OF, "/status/burn?as_of=" + AS_OF, "/status/burn?forecast=true&as_of=" + AS_OF,
         "/forecast?sims=50&as_of=" + AS_OF, "/reports", "/payouts", "/periods/0/evidence")
# who may read the demo agreement: its vendor, its customer, any auditor
READ_OK = {"vendor": 200, "customer": 200, "auditor": 200, "other_vendor": 403, "other_customer": 403,
           None: 401, "bogus": 401}
# writes: only the agreement's own vendor
WRITE_OK = {"vendor": 200, "customer": 403, "auditor": 403, "other_vendor": 403, "other_customer": 403,
            None: 401, "bogus": 401}


def headers(world, who):
    if who == "bogus":
        return {"X-API-Key": "slk_not_a_key"}
    return world.headers(who)


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("route", READS)
def test_read_matrix(client, world, route, who):
    r = client.get(f"/v1/agreements/{world.agreement}{route}", headers=headers(world, who))
    assert r.status_code == READ_OK[who], r.text


@pytest.mark.parametrize("who", ROLES)
def test_register_terms_matrix(client, world, who):
    r = client.put(f"/v1/agreements/{world.agreement}/terms", json={"terms": TERMS.read_text()},
                   headers=headers(world, who))
    assert r.status_code == WRITE_OK[who], r.text


@pytest.mark.parametrize("who", ROLES)
def test_ingest_matrix(client, world, who):
    # December: October stays as the example
    rows = [{"ts": "2026-12-02T10:00:00Z", "device_id": "N1", "state": "available"}]
    r = client.post(f"/v1/agreements/{world.agreement}/telemetry/events", json=rows, headers=headers(world, who))
    assert r.status_code == WRITE_OK[who], r.text


@pytest.mark.parametrize("who", ROLES)
def test_create_matrix(client, world, who):
    body = {"terms": TERMS.read_text(), "customer": world.customer, "oracles": ORACLES[:1], "threshold": 1}
    r = client.post("/v1/agreements", json=body, headers=headers(world, who))
    # any vendor may create agreements (it becomes their vendor); customers and auditors may not
    expected = {"vendor": 201, "other_vendor": 201}.get(who, WRITE_OK[who])
    assert r.status_code == expected, r.text


@pytest.mark.parametrize("who", ROLES)
def test_validate_terms_is_open_to_every_role(client, world, who):
    r = client.post("/v1/terms/validate", json={"terms": TERMS.read_text()}, headers=headers(world, who))
    assert r.status_code == (401 if who in (None, "bogus") else 200), r.text


def test_other_vendor_cannot_write_to_the_demo_agreement_but_to_its_own(client, world):
    r = client.put(f"/v1/agreements/{world.other}/terms", json={"terms": TERMS.read_text()},
                   headers=world.headers("other_vendor"))
    assert r.status_code == 200, r.text
    r = client.put(f"/v1/agreements/{world.other}/terms", json={"terms": TERMS.read_text()},
                   headers=world.headers("vendor"))
    assert r.status_code == 403


def test_customers_list_only_their_own_agreements(client, world):
    mine = client.get("/v1/agreements", headers=world.headers("customer")).json()
    assert {a["customer"] for a in mine} == {world.customer} and world.agreement in {a["address"] for a in mine}
    theirs = client.get("/v1/agreements", headers=world.headers("other_customer")).json()
    assert {a["address"] for a in theirs} == {world.other}
    # a filter naming someone else gives nothing rather than their agreements
    assert client.get(f"/v1/agreements?customer={world.other_customer}", headers=world.headers("customer")).json() == []
    every = client.get("/v1/agreements", headers=world.headers("auditor")).json()
    assert {world.agreement, world.other} <= {a["address"] for a in every}
    by_vendor = client.get(f"/v1/agreements?vendor={world.other_vendor}", headers=world.headers("auditor")).json()
    assert world.other in {a["address"] for a in by_vendor} and world.agreement not in {a["address"] for a in by_vendor}


def test_bearer_token_works_like_the_key_header(client, world):
    r = client.get(f"/v1/agreements/{world.agreement}", headers={"Authorization": f"Bearer {world.keys['auditor']}"})
    assert r.status_code == 200


def test_every_write_is_audit_logged_refusals_too(client, world):
    body = {"terms": TERMS.read_text()}
    client.put(f"/v1/agreements/{world.agreement}/terms", json=body, headers=world.headers("customer"))
    client.put(f"/v1/agreements/{world.agreement}/terms", json=body, headers=world.headers("vendor"))
    engine = create_engine(world.settings.db_url)
    with engine.connect() as conn:
        rows = conn.execute(select(api_audit).where(api_audit.c.agreement == world.agreement)).mappings().all()
    engine.dispose()
    outcomes = {(r["key_id"], r["method"], r["status"]) for r in rows}
    assert ("customer", "PUT", 403) in outcomes and ("vendor", "PUT", 200) in outcomes
    ok = [r for r in rows if r["key_id"] == "vendor" and r["status"] == 200 and r["method"] == "PUT"]
    assert json.loads(ok[-1]["detail"])["terms_hash"].startswith("0x")


def test_keys_are_stored_hashed(world):
    text = world.settings.keys_file.read_text()
    assert all(token not in text for token in world.keys.values())


def test_open_routes_need_no_key(client):
    for path in ("/health", "/ready", "/docs", "/openapi.json", "/dashboard", "/static/vendor/chart.umd.js"):
        assert client.get(path).status_code == 200, path
