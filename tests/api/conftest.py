"""Fixtures for the API tests: one real Anvil with the demo's agreement (period 2026-10 settled
and paid), a second agreement of another vendor and customer, the example telemetry ingested into
a real SQLite database, the period's evidence bundle, an API keys file and the app."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak
from fastapi.testclient import TestClient
from web3 import Web3

from api.app import create_app
from api.auth import hash_key
from api.settings import ApiSettings
from oracle.chain import devchain
from oracle.chain.abi import PROJECT_ROOT, contract
from oracle.chain.config import config_from_terms
from oracle.chain.report import report_from_result
from oracle.chain.signing import sign_for
from oracle.chain.tx import create_agreement, deploy, deploy_factory, deposit, submit_report, transact
from oracle.core.period import period_bounds
from oracle.core.terms import load_terms, terms_hash
from oracle.engine.kpi import compute_period
from oracle.engine.replay import freeze_period
from oracle.evidence.load import load_evidence
from oracle.store.db import connect
from oracle.store.export import export_evidence
from oracle.store.ingest import ingest_file

EXAMPLE = PROJECT_ROOT / "examples" / "acme-ev"
TERMS = EXAMPLE / "terms.yaml"
ORACLE_KEYS = [keccak(text=f"slacomp api test oracle {i}") for i in range(3)]
# neither party may be an oracle (the factory refuses it): agreements created through the API use these
ORACLES = [Account.from_key(k).address for k in ORACLE_KEYS]
AS_OF = "2026-10-20T00:00:00Z"  # inside the example's October, before the demo settled it
KEYS = {name: f"slk_test_{name}" for name in ("vendor", "customer", "auditor", "other_vendor", "other_customer")}


@dataclass
class World:
    url: str
    w3: Web3
    factory: str
    agreement: str  # the demo's: vendor accounts[0], customer accounts[1], period 0 settled
    other: str  # vendor accounts[3], customer accounts[2]; nothing ingested, terms not registered
    vendor: str
    customer: str
    other_vendor: str
    other_customer: str
    settings: ApiSettings
    keys: dict[str, str] = field(default_factory=lambda: dict(KEYS))

    def headers(self, who: str | None) -> dict[str, str]:
        return {"X-API-Key": self.keys[who]} if who else {}


@pytest.fixture(scope="session")
def anvil() -> Iterator[devchain.DevChain]:
    with devchain.start("anvil") as chain:
        yield chain


def settle_first_period(w3: Web3, vendor: str, customer: str, relayer: str) -> tuple[str, str]:
    """Factory, USDC-like token, an agreement under the example terms (2 of 3 oracles), escrow for
    the whole term, and October 2026 measured from the example evidence, signed and paid.
    Returns (factory, agreement)."""
    terms = load_terms(TERMS)
    factory = deploy_factory(w3, vendor)
    token = deploy(w3, "TestToken", vendor, "Test USD Coin", "USDC", 6)
    oracles = [Account.from_key(k).address for k in ORACLE_KEYS]
    config = config_from_terms(terms, customer=customer, asset=token.address, oracles=oracles, threshold=2)
    agreement, _ = create_agreement(w3, factory, vendor, config, customer=customer)
    escrow = config.max_credit_per_period() * config.period_count
    transact(w3, token.functions.mint(vendor, escrow), vendor, "mint")
    deposit(w3, agreement, vendor, escrow)
    result = compute_period(terms, load_evidence(EXAMPLE / "evidence", terms), "2026-10")
    w3.provider.make_request("evm_mine", [config.period_bounds[1] + 1])
    report = report_from_result(result, 0)
    signatures = sign_for(report, config, w3.eth.chain_id, agreement.address, ORACLE_KEYS[:2])
    submit_report(w3, agreement, config, report, signatures, relayer)
    return factory.address, agreement.address


@pytest.fixture(scope="session")
def world(anvil, tmp_path_factory) -> World:
    w3 = anvil.w3()
    acct = w3.eth.accounts
    factory, agreement = settle_first_period(w3, acct[0], acct[1], acct[4])

    terms = load_terms(TERMS)
    oracles = [Account.from_key(k).address for k in ORACLE_KEYS]
    config = config_from_terms(terms, customer=acct[2], asset="0x" + "00" * 20, oracles=oracles, threshold=2)
    other, _ = create_agreement(w3, contract(w3, "AgreementFactory", factory), acct[3], config, customer=acct[2])

    root = tmp_path_factory.mktemp("api")
    data_dir = root / "data"
    db_url = f"sqlite:///{root / 'oracle.db'}"
    engine = connect(db_url)
    key = agreement.lower()
    for name in ("devices.csv", "events.csv", "exclusions.csv"):
        ingest_file(engine, terms, key, EXAMPLE / "evidence" / name)
    start, end = period_bounds(terms, "2026-10")
    with engine.connect() as conn:
        files = export_evidence(conn, key, start, end)
    bundle, result = freeze_period(data_dir / "bundles", TERMS.read_bytes(), files, "2026-10")
    onchain_root = contract(w3, "Agreement", agreement).events.ReportAccepted().get_logs(from_block=0)[0]["args"]
    assert "0x" + bytes(onchain_root["evidenceRoot"]).hex() == result.evidence_root
    engine.dispose()
    (data_dir / "terms").mkdir(parents=True)
    (data_dir / "terms" / f"{terms_hash(terms)}.yaml").write_bytes(TERMS.read_bytes())

    parties = {"vendor": acct[0], "customer": acct[1], "other_customer": acct[2], "other_vendor": acct[3]}
    records = [{"id": name, "role": name.split("_")[-1], "sha256": hash_key(token)} | (
        {"party": parties[name]} if name in parties else {}) for name, token in KEYS.items()]
    keys_file = root / "keys.json"
    keys_file.write_text(json.dumps({"keys": records}))
    settings = ApiSettings(rpc_url=anvil.url, db_url=db_url, data_dir=data_dir, keys_file=keys_file,
                           factories=(factory,), block_poll_s=0.0)
    return World(anvil.url, w3, factory, agreement, other.address, acct[0], acct[1], acct[3], acct[2], settings)


@pytest.fixture(scope="session")
def client(world) -> Iterator[TestClient]:
    with TestClient(create_app(world.settings)) as c:
        yield c


def get_json(client: TestClient, path: str, who: str | None, world: World, **kw: Any) -> Any:
    r = client.get(path, headers=world.headers(who), **kw)
    assert r.status_code == 200, r.text
    return r.json()
