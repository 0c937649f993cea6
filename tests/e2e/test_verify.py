"""`slacomp verify` on a real Anvil: a clean history verifies; each kind of tampering is caught
and named (terms changed, oracle set not the agreed one, modified contract bytecode, skipped period)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import solcx
import yaml
from eth_account import Account
from eth_utils import keccak

from oracle.chain import devchain
from oracle.chain.abi import PROJECT_ROOT, contract
from oracle.chain.config import config_from_terms
from oracle.chain.report import make_report
from oracle.chain.signing import sign_for
from oracle.chain.tx import create_agreement, deploy_factory, deposit, submit_report
from oracle.core.terms import load_terms, parse_terms
from oracle.verify.customer import verify_agreement
from slacomp.demo import DEMO_ORACLE_KEYS
from tests.e2e.helpers import EXAMPLE, settle_example

TERMS = load_terms(EXAMPLE / "terms.yaml")
ORACLES = [Account.from_key(k).address for k in DEMO_ORACLE_KEYS]


@pytest.fixture(scope="module")
def anvil():
    with devchain.start("anvil") as chain:
        yield chain


def _settle(w3, agreement, config, period, attainments, keys=DEMO_ORACLE_KEYS[:2]):
    end = config.period_bounds[period + 1]
    if w3.eth.get_block("latest")["timestamp"] <= end:
        w3.provider.make_request("evm_mine", [end + 1])
    report = make_report(period, config.terms_hash, keccak(text=f"evidence {period}"), attainments)
    sigs = sign_for(report, config, w3.eth.chain_id, agreement.address, keys)
    return submit_report(w3, agreement, config, report, sigs, w3.eth.accounts[2])


def _agreement(w3, oracles=ORACLES, factory=None):
    vendor, customer = w3.eth.accounts[:2]
    config = config_from_terms(TERMS, customer=customer, asset="0x" + "00" * 20, oracles=oracles, threshold=2)
    agreement, _ = create_agreement(w3, factory or deploy_factory(w3, vendor), vendor, config, customer=customer)
    return agreement, config


def test_clean_multi_month_history_verifies(anvil):
    w3 = anvil.w3()
    agreement, config = _agreement(w3)
    deposit(w3, agreement, w3.eth.accounts[0], 3_000 * 10**6)   # less than the credits: debt appears
    _settle(w3, agreement, config, 0, [[8_750, 10_000], [8_750, 10_000], [9_247]])   # 2,750 USDC
    _settle(w3, agreement, config, 1, [[10_000, 8_000], [10_000, 10_000], [9_950]])  # south's 1,500
    v = verify_agreement(w3, agreement.address, TERMS, oracles=ORACLES, threshold=2)
    assert v.ok, v.first_problem()
    assert [p.credit for p in v.periods] == [2_750 * 10**6, 1_500 * 10**6]
    assert v.periods[1].debt == 1_250 * 10**6 and v.periods[1].paid == 250 * 10**6


def test_cli_verify_exits_zero_and_prints_json(anvil):
    result = settle_example(anvil.w3())
    out = subprocess.run([sys.executable, "-m", "slacomp.cli", "verify", result.agreement, "--terms",
                          str(EXAMPLE / "terms.yaml"), "--rpc", anvil.url, "--format", "json"],
                         capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["ok"] is True and data["periods"][0]["credit"] == str(2_750 * 10**6)


def test_terms_changed_after_signing_is_caught(anvil):
    w3 = anvil.w3()
    agreement, config = _agreement(w3)
    _settle(w3, agreement, config, 0, [[10_000, 10_000], [10_000, 10_000], [10_000]])
    text = (EXAMPLE / "terms.yaml").read_text().replace('fee: "1000"', 'fee: "2000"')
    v = verify_agreement(w3, agreement.address, parse_terms(text, "edited.yaml"))
    failed = [c.name for c in v.checks if not c.ok]
    assert "terms: on-chain termsHash is the hash of your terms file" in failed
    assert "terms: the credit schedule and periods are the terms'" in failed


def test_report_from_an_oracle_set_that_was_not_agreed_is_caught(anvil):
    w3 = anvil.w3()
    puppets = [keccak(text=f"vendor puppet {i}") for i in range(2)]
    agreement, config = _agreement(w3, oracles=[Account.from_key(k).address for k in puppets])
    _settle(w3, agreement, config, 0, [[10_000, 10_000], [10_000, 10_000], [10_000]], keys=puppets)
    v = verify_agreement(w3, agreement.address, TERMS, oracles=ORACLES, threshold=2)
    assert not v.ok and v.first_problem().startswith("oracles: the initial oracle set is the agreed one")


def _optimizer_runs() -> int:
    """The optimizer runs of brownie-config.yaml (more would take the Agreement past 24,576 bytes)."""
    config = yaml.safe_load((PROJECT_ROOT / "brownie-config.yaml").read_text())
    return int(config["compiler"]["solc"]["optimizer"]["runs"])


def _compile_modified() -> dict:
    """The repository's contracts with the in-order period check weakened (a 'vendor fork')."""
    os.environ.setdefault("SOLCX_BINARY_PATH", str(PROJECT_ROOT / ".solcx"))
    src = (PROJECT_ROOT / "contracts" / "Agreement.sol").read_text()
    assert "if (period != next) {" in src
    sources = {
        "contracts/Agreement.sol": {"content": src.replace("if (period != next) {", "if (period < next) {")},
        "contracts/AgreementFactory.sol": {"content": (PROJECT_ROOT / "contracts/AgreementFactory.sol").read_text()},
    }
    out = solcx.compile_standard({
        "language": "Solidity", "sources": sources,
        "settings": {"optimizer": {"enabled": True, "runs": _optimizer_runs()}, "evmVersion": "shanghai",
                     "remappings": ["@openzeppelin/=node_modules/@openzeppelin/"],
                     "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}}},
    }, solc_version="0.8.28", allow_paths=str(PROJECT_ROOT), base_path=str(PROJECT_ROOT))
    return out["contracts"]["contracts/AgreementFactory.sol"]["AgreementFactory"]


def test_modified_contract_and_skipped_period_are_caught(anvil, monkeypatch):
    w3 = anvil.w3()
    art = _compile_modified()
    vendor = w3.eth.accounts[0]
    factory_c = w3.eth.contract(abi=art["abi"], bytecode=art["evm"]["bytecode"]["object"])
    receipt = w3.eth.wait_for_transaction_receipt(factory_c.constructor().transact({"from": vendor}))
    factory = contract(w3, "AgreementFactory", receipt["contractAddress"])
    agreement, config = _agreement(w3, factory=factory)
    _settle(w3, agreement, config, 1, [[10_000, 10_000], [10_000, 10_000], [10_000]])  # skips period 0
    v = verify_agreement(w3, agreement.address, TERMS)
    assert not v.ok
    assert v.first_problem().startswith("code: implementation matches the repository's Agreement")
    # verify stops at the code check; with it bypassed, the history check names the skipped period
    monkeypatch.setattr("oracle.verify.customer._check_code", lambda *a: ([], None))
    v = verify_agreement(w3, agreement.address, TERMS)
    assert any("skipped" in p for p in v.periods[0].problems)
