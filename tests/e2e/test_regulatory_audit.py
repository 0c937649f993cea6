"""Longer objective windows end to end on a real Anvil: a simulated EV estate with a trailing-12-months
NEVI objective and a calendar-year PCPR objective is ingested into the node's SQLite store, each
month is closed by the node's close step (its bundle frozen from the store's export of the whole
window), signed and settled; `slacomp audit` replays every bundle alone, bit for bit."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
from eth_account import Account

from oracle.chain import devchain
from oracle.chain.abi import PROJECT_ROOT
from oracle.chain.config import config_from_terms
from oracle.chain.report import make_report
from oracle.chain.signing import sign_for
from oracle.chain.tx import create_agreement, deploy_factory, deposit, submit_report
from oracle.core.period import evidence_start, period_bounds, period_labels
from oracle.core.terms import load_terms
from oracle.engine.kpi import compute_period
from oracle.evidence.bundle import load_bundle
from oracle.evidence.load import load_evidence
from oracle.node.close import CloseJob, prepare_close
from oracle.sim.simulate import SimParams, simulate
from oracle.store import db
from oracle.store.ingest import ingest_folder
from oracle.verify.audit import audit_agreement, prove_device, verify_inclusion
from slacomp.demo import DEMO_ORACLE_KEYS

ORACLES = [Account.from_key(k).address for k in DEMO_ORACLE_KEYS]
REGULATORY = [
    "  - {id: nevi, kpi: nevi_uptime, scope: per_device, window: trailing_12_months, target_bps: 9990,"
    ' device_fee: "5", credits: [{below_bps: 9990, credit_bps: 10000}]}',
    "  - {id: pcpr, kpi: pcpr_reliability, scope: estate, window: calendar_year, target_bps: 9990,"
    " credits: [{below_bps: 9990, credit_bps: 500}]}",
]


@pytest.fixture(scope="module")
def anvil():
    with devchain.start("anvil") as chain:
        yield chain


@pytest.fixture(scope="module")
def settled(anvil, tmp_path_factory):
    """Three months (2026-09..11) closed by the node's close step and settled on chain."""
    out = tmp_path_factory.mktemp("estate")
    simulate(SimParams(sites=3, devices_per_site=2, months=3, start="2026-09", seed=5, bad_sites=1), out)
    terms_file = out / "terms.yaml"
    terms_file.write_text(terms_file.read_text().replace("objectives:\n", "objectives:\n" + "\n".join(REGULATORY)
                                                         + "\n", 1))
    terms = load_terms(terms_file)
    engine = db.connect(f"sqlite:///{out / 'node.db'}")
    ingest_folder(engine, terms, "cpo", out / "evidence")
    store = out / "store"
    w3 = anvil.w3()
    vendor, customer, relayer = w3.eth.accounts[:3]
    config = config_from_terms(terms, customer=customer, asset="0x" + "00" * 20, oracles=ORACLES, threshold=2)
    agreement, _ = create_agreement(w3, deploy_factory(w3, vendor), vendor, config, customer=customer)
    deposit(w3, agreement, vendor, 10**21)
    closes = []
    for index, label in enumerate(period_labels(terms)):
        job = CloseJob("cpo", agreement.address, index, label, config.period_bounds[index],
                       config.period_bounds[index + 1], terms_file.read_bytes(), str(store), w3.eth.chain_id)
        closed = prepare_close(engine, job)
        closes.append(closed)
        report = make_report(index, closed.terms_hash, closed.evidence_root, [list(r) for r in closed.attainments])
        end = config.period_bounds[index + 1]
        if w3.eth.get_block("latest")["timestamp"] <= end:
            w3.provider.make_request("evm_mine", [end + 1])
        submit_report(w3, agreement, config, report, sign_for(report, config, w3.eth.chain_id, agreement.address,
                                                              DEMO_ORACLE_KEYS[:2]), relayer)
    return agreement.address, terms, out, store, closes


def test_each_close_freezes_its_whole_window_and_equals_slacomp_kpi(settled):
    _, terms, out, _, closes = settled
    everything = load_evidence(out / "evidence", terms)
    for closed, label in zip(closes, period_labels(terms), strict=True):
        assert closed.start == evidence_start(terms, label) == period_bounds(terms, "2026-09")[0]
        kpi = compute_period(terms, everything, label)
        assert closed.evidence_root == kpi.evidence_root
        assert [list(r) for r in closed.attainments] == [[r.attainment_bps for r in o.results] for o in kpi.objectives]
        assert closed.total_credit == kpi.total_credit
    # November's bundle carries September's events (the window's history), not just November's
    nov = next(b for b in map(load_bundle, (out / "store").glob("*.zip")) if b.bundle.label == "2026-11")
    assert int(nov.evidence.ev_ts.min()) < period_bounds(terms, "2026-09")[0] + 86400
    nevi = compute_period(terms, everything, "2026-11").objective("nevi")
    monthly = replace(terms, objectives=tuple(replace(o, window="period") for o in terms.objectives))
    period_alone = compute_period(monthly, everything, "2026-11")
    assert [r.attainment_bps for r in nevi.results] != \
        [r.attainment_bps for r in period_alone.objective("nevi").results]  # the window changes the figure


def test_audit_replays_trailing_window_bundles_bit_for_bit(anvil, settled):
    address, terms, _, store, _ = settled
    audit = audit_agreement(anvil.w3(), address, terms, store)
    assert audit.ok, audit.first_discrepancy()
    assert [p.label for p in audit.periods] == ["2026-09", "2026-10", "2026-11"]
    assert all(any(name == "KPIs recomputed bit for bit" and ok for name, ok, _ in p.checks) for p in audit.periods)
    run = subprocess.run([sys.executable, "-m", "slacomp.cli", "audit", address, "--evidence-store", str(store),
                          "--rpc", anvil.url, "--format", "json"], capture_output=True, cwd=PROJECT_ROOT)
    assert run.returncode == 0, run.stderr.decode()
    assert json.loads(run.stdout)["ok"] is True


def test_inclusion_proof_of_a_port_checks_against_the_trailing_windows_root(anvil, settled):
    address, terms, _, store, closes = settled
    bundle = next(p for p in store.glob("*.zip") if load_bundle(p).bundle.label == "2026-11")
    device = load_bundle(bundle).evidence.device_ids[0]
    proof = prove_device(bundle, device)
    assert proof.verified and verify_inclusion(proof, closes[-1].evidence_root)
