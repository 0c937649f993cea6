"""The forecast routes against the oracle's own forecast of the example evidence: P(meet), the 90%
interval, expected credit and status per subject, the open faults to fix first, the forecast band
of the burn chart, and bad input."""
from __future__ import annotations

import pytest

from oracle.core.terms import load_terms
from oracle.engine.forecast import ForecastParams, burn_chart, forecast_period
from oracle.evidence.csv import parse_ts_text
from oracle.evidence.load import load_evidence

from .conftest import AS_OF, EXAMPLE, TERMS, get_json

FAULTS_OPEN = "2026-10-14T12:00:00Z"  # four north chargers down at once


def direct(as_of: str, sims: int):
    terms = load_terms(TERMS)
    evidence = load_evidence(EXAMPLE / "evidence", terms)
    return terms, evidence, forecast_period(terms, evidence, "2026-10", parse_ts_text(as_of),
                                            ForecastParams(sims=sims, seed=0))


def test_forecast_is_the_oracles_forecast_of_the_evidence(client, world):
    f = get_json(client, f"/v1/agreements/{world.agreement}/forecast?as_of={AS_OF}", "customer", world)
    _, _, report = direct(AS_OF, 300)
    assert (f["label"], f["as_of"], f["sims"], f["seed"], f["currency"]) == ("2026-10", AS_OF, 300, 0, "USDC")
    got = [(o["id"], r["subject"], r["p_meet"], r["attainment_interval_bps"], r["expected_credit"]["raw"], r["status"])
           for o in f["objectives"] for r in o["results"]]
    want = [(s.objective, s.subject, round(s.p_meet, 4),
             {"p05": s.attainment_p05, "p50": s.attainment_p50, "p95": s.attainment_p95},
             str(round(s.expected_credit)), s.status) for s in report.subjects]
    assert got == want
    north = f["objectives"][0]["results"][0]
    # north's month is already lost: no chance, the whole site credit expected
    assert (north["subject"], north["status"], north["p_meet"]) == ("north", "lost", 0.0)
    assert north["expected_credit"]["units"] == "1000.000000"
    assert f["priorities"] == []  # nothing is down at this instant


def test_open_faults_are_ranked_by_credit_saved(client, world):
    f = get_json(client, f"/v1/agreements/{world.agreement}/forecast?as_of={FAULTS_OPEN}&sims=200", "vendor", world)
    _, _, report = direct(FAULTS_OPEN, 200)
    assert [(p["device"], p["site"], p["expected_credit_saved"]["raw"]) for p in f["priorities"]] == [
        (p.device, p.site, str(round(p.expected_credit_saved))) for p in report.priorities]
    assert {p["device"] for p in f["priorities"]} == {"N1", "N2", "N3", "N4"}
    saved = [int(p["expected_credit_saved"]["raw"]) for p in f["priorities"]]
    assert saved == sorted(saved, reverse=True) and saved[0] > 0


def test_burn_with_forecast_carries_the_band_to_period_end(client, world):
    url = f"/v1/agreements/{world.agreement}/status/burn?as_of={AS_OF}"
    plain = get_json(client, url, "auditor", world)
    b = get_json(client, url + "&forecast=true&sims=200", "auditor", world)
    assert all(s["forecast"] is None for o in plain["objectives"] for s in o["series"])
    terms, evidence, _ = direct(AS_OF, 200)
    for o in b["objectives"]:
        for s in o["series"]:
            chart = burn_chart(terms, evidence, "2026-10", parse_ts_text(AS_OF), o["id"], s["subject"],
                               ForecastParams(sims=200, seed=0))
            band = s["forecast"]
            assert [(p["p05_s"], p["p50_s"], p["p95_s"]) for p in band] == [
                (round(a, 1), round(m, 1), round(c, 1)) for _, a, m, c in chart.forecast]
            # the band starts where the observed series ends and runs to the period's end
            assert band[0]["t"] == AS_OF and band[0]["p50_s"] == s["bad_s"][-1] and band[-1]["t"] == b["end"]
            assert all(p["p05_s"] <= p["p50_s"] <= p["p95_s"] for p in band)
            assert band[-1]["p50_pct"] == round(100 * band[-1]["p50_s"] / s["budget_total_s"], 2)


@pytest.mark.parametrize("route", ["/forecast?", "/status/burn?forecast=true&"])
@pytest.mark.parametrize("sims", ["49", "2001", "many"])
def test_bad_sims_is_422_naming_the_field(client, world, route, sims):
    r = client.get(f"/v1/agreements/{world.agreement}{route}sims={sims}&as_of={AS_OF}",
                   headers=world.headers("auditor"))
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "sims", r.text


@pytest.mark.parametrize("address,who,code", [
    ("0x" + "12" * 20, "auditor", 404), (None, None, 401), (None, "other_customer", 403), (None, "other_vendor", 403)])
def test_forecast_access_like_status(client, world, address, who, code):
    r = client.get(f"/v1/agreements/{address or world.agreement}/forecast?as_of={AS_OF}", headers=world.headers(who))
    assert r.status_code == code, r.text


def test_forecast_as_of_without_offset_is_422(client, world):
    r = client.get(f"/v1/agreements/{world.agreement}/forecast?as_of=2026-10-20T00:00:00",
                   headers=world.headers("auditor"))
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "as_of"
