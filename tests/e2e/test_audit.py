"""`slacomp audit` on a real Anvil with simulated evidence: a clean two-month history audits clean
and replays identically (also under another TZ); each tampering is caught and named; a device's
inclusion proof checks against the on-chain evidenceRoot alone."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account

from oracle.chain import devchain
from oracle.chain.abi import PROJECT_ROOT
from oracle.chain.config import config_from_terms
from oracle.chain.report import make_report, report_from_result
from oracle.chain.signing import sign_for
from oracle.chain.tx import create_agreement, deploy_factory, deposit, submit_report
from oracle.core.period import period_labels
from oracle.core.terms import load_terms
from oracle.engine.replay import freeze_period
from oracle.evidence.bundle import find_bundle, open_bundle
from oracle.sim.simulate import SimParams, simulate
from oracle.verify.audit import audit_agreement, prove_device, verify_inclusion
from slacomp.demo import DEMO_ORACLE_KEYS
from tests.e2e.helpers import rewrite_bundle

ORACLES = [Account.from_key(k).address for k in DEMO_ORACLE_KEYS]


@pytest.fixture(scope="module")
def anvil():
    with devchain.start("anvil") as chain:
        yield chain


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    out = tmp_path_factory.mktemp("estate")
    simulate(SimParams(sites=4, devices_per_site=3, months=2, start="2026-09", seed=7, bad_sites=1), out)
    return out


def _history(w3, estate: Path, store: Path, tamper_kpi: bool = False):
    """Bundle, sign and settle both months; returns the agreement address."""
    terms = load_terms(estate / "terms.yaml")
    vendor, customer, relayer = w3.eth.accounts[:3]
    config = config_from_terms(terms, customer=customer, asset="0x" + "00" * 20, oracles=ORACLES, threshold=2)
    agreement, _ = create_agreement(w3, deploy_factory(w3, vendor), vendor, config, customer=customer)
    deposit(w3, agreement, vendor, 10**21)
    files = {p.name: p.read_bytes() for p in sorted((estate / "evidence").iterdir())}
    for index, label in enumerate(period_labels(terms)):
        _, result = freeze_period(store, (estate / "terms.yaml").read_bytes(), files, label,
                                 meta={"agreement": agreement.address})
        report = report_from_result(result, index)
        if tamper_kpi and index == 1:  # the oracles sign better numbers than the evidence gives
            rows = [list(r) for r in report.attainments]
            rows[0][0] = min(10_000, rows[0][0] + 500)
            report = make_report(index, report.terms_hash, report.evidence_root, rows)
        end = config.period_bounds[index + 1]
        if w3.eth.get_block("latest")["timestamp"] <= end:
            w3.provider.make_request("evm_mine", [end + 1])
        sigs = sign_for(report, config, w3.eth.chain_id, agreement.address, DEMO_ORACLE_KEYS[:2])
        submit_report(w3, agreement, config, report, sigs, relayer)
    return agreement.address, terms


@pytest.fixture(scope="module")
def clean(anvil, estate, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    address, terms = _history(anvil.w3(), estate, store)
    return address, terms, store


def _run_cli(anvil, address, store, tz="UTC"):
    env = dict(os.environ, TZ=tz)
    return subprocess.run([sys.executable, "-m", "slacomp.cli", "audit", address, "--evidence-store", str(store),
                           "--rpc", anvil.url, "--format", "json"], capture_output=True, env=env, cwd=PROJECT_ROOT)


def test_clean_history_audits_clean_and_replays_identically(anvil, clean):
    address, terms, store = clean
    audit = audit_agreement(anvil.w3(), address, terms, store)
    assert audit.ok, audit.first_discrepancy()
    assert len(audit.periods) == 2 and all(p.bundle for p in audit.periods)
    assert any(p.credit > 0 for p in audit.verification.periods)  # the bad site earned a credit
    first = _run_cli(anvil, address, store)
    assert first.returncode == 0, first.stderr.decode()
    assert json.loads(first.stdout)["ok"] is True
    again = _run_cli(anvil, address, store)
    elsewhere = _run_cli(anvil, address, store, tz="Pacific/Chatham")
    assert first.stdout == again.stdout == elsewhere.stdout


def _tampered_store(store: Path, tmp_path: Path, root: str, edit) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    bundle = copy / find_bundle(store, root).name
    edit(bundle)
    return copy


def test_changed_event_row_is_caught_as_tampered_evidence(anvil, clean, tmp_path):
    address, terms, store = clean
    root = audit_agreement(anvil.w3(), address, terms, store).periods[0].evidence_root

    def edit(bundle: Path):
        def one_row(data: bytes) -> bytes:
            lines = data.decode().splitlines(keepends=True)
            i = next(k for k, line in enumerate(lines) if ",faulted" in line)
            lines[i] = lines[i].replace(",faulted", ",available")
            return "".join(lines).encode()

        rewrite_bundle(bundle, {"evidence/events.csv": one_row})

    audit = audit_agreement(anvil.w3(), address, terms, _tampered_store(store, tmp_path, root, edit))
    assert not audit.ok
    assert audit.first_discrepancy().startswith("period 0 (2026-09): evidence tampered")


def test_device_removed_with_a_rewritten_manifest_is_caught(anvil, clean, tmp_path):
    """A careful tamperer also fixes the manifest's hashes: the commitment still does not match."""
    address, terms, store = clean
    root = audit_agreement(anvil.w3(), address, terms, store).periods[0].evidence_root

    def edit(bundle: Path):
        import hashlib
        victim = []

        def drop_first_device(data: bytes) -> bytes:
            lines = data.decode().splitlines(keepends=True)
            victim.append(lines[1].split(",")[0])
            return "".join(lines[:1] + lines[2:]).encode()

        def drop_its_events(data: bytes) -> bytes:
            return "".join(line for line in data.decode().splitlines(keepends=True)
                           if line.split(",")[1:2] != victim).encode()

        members = rewrite_bundle(bundle, {"evidence/devices.csv": drop_first_device})
        members = rewrite_bundle(bundle, {"evidence/events.csv": drop_its_events})
        manifest = json.loads(members["manifest.json"])
        for name in ("evidence/devices.csv", "evidence/events.csv"):
            data = members[name]
            manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        rewrite_bundle(bundle, {"manifest.json": lambda _: body})
        new_id = hashlib.sha256(body).hexdigest()
        bundle.rename(bundle.parent / f"{new_id}.zip")
        index = bundle.parent / "roots" / root
        for p in index.iterdir():
            p.unlink()
        (index / f"{new_id}.zip").touch()

    audit = audit_agreement(anvil.w3(), address, terms, _tampered_store(store, tmp_path, root, edit))
    problem = audit.first_discrepancy()
    assert problem.startswith("period 0 (2026-09): evidence tampered") and "recomputed root" in problem


def test_missing_bundle_is_named(anvil, clean, tmp_path):
    address, terms, _ = clean
    audit = audit_agreement(anvil.w3(), address, terms, tmp_path)
    assert audit.first_discrepancy().startswith("period 0 (2026-09): evidence missing")


def test_signed_numbers_that_differ_from_the_evidence_are_a_kpi_mismatch(anvil, estate, tmp_path):
    address, terms = _history(anvil.w3(), estate, tmp_path, tamper_kpi=True)
    audit = audit_agreement(anvil.w3(), address, terms, tmp_path)
    assert audit.periods[0].ok and not audit.periods[1].ok
    assert audit.first_discrepancy().startswith("period 1 (2026-10): KPI mismatch")


def test_inclusion_proof_of_one_device_checks_against_the_chain(anvil, clean):
    address, terms, store = clean
    audit = audit_agreement(anvil.w3(), address, terms, store)
    root = audit.periods[1].evidence_root  # as read from the ReportAccepted log
    bundle = find_bundle(store, root)
    device = open_bundle(store, bundle.name.removesuffix(".zip")).read("evidence/devices.csv").decode() \
        .splitlines()[1].split(",")[0]
    proof = prove_device(bundle, device)
    assert proof.verified and verify_inclusion(proof, root)
    forged = proof.__class__(**{**proof.__dict__, "leaf_data": proof.leaf_data[:-2] + "00"})
    assert not verify_inclusion(forged, root)
