"""End to end on a real Anvil: terms file -> on-chain config -> KPI engine -> signed report ->
settlement, through the same functions the demo and the oracle use (no brownie, no mocks)."""
from __future__ import annotations

import pytest
from eth_account import Account
from web3 import Web3

from oracle import devchain
from oracle.chain import ChainError, create_agreement, deploy, deploy_factory, deposit, submit_report, transact
from oracle.demo import DEMO_ORACLE_KEYS, EXAMPLE, run_demo
from oracle.evidence import load_evidence
from oracle.kpi import compute_period
from oracle.report import report_from_result
from oracle.schedule import config_from_terms
from oracle.signing import sign_for
from oracle.terms import load_terms, period_bounds, period_labels


@pytest.fixture(scope="module")
def anvil():
    with devchain.start("anvil") as chain:
        yield chain


def test_demo_pays_exactly_the_engine_credit(anvil):
    result = run_demo(rpc=anvil.url)
    assert result.engine_credit == 2_750 * 10**6  # north misses availability and max-down; estate uptime
    assert result.paid == result.customer_received == result.engine_credit


def test_terms_file_becomes_the_on_chain_schedule(anvil):
    w3 = anvil.w3()
    vendor, customer = w3.eth.accounts[:2]
    terms = load_terms(EXAMPLE / "terms.yaml")
    oracles = [Account.from_key(k).address for k in DEMO_ORACLE_KEYS]
    config = config_from_terms(terms, customer=customer, asset="0x" + "00" * 20, oracles=oracles, threshold=2)
    factory = deploy_factory(w3, vendor)
    agreement, _ = create_agreement(w3, factory, vendor, config)
    f = agreement.functions
    assert f.termsHash().call().hex().removeprefix("0x") == config.terms_hash.hex()
    assert f.periodCount().call() == terms.periods == 3
    # calendar months in Europe/London: October has 31 days and a 25-hour day (DST ends)
    start, end = period_bounds(terms, "2026-10")
    assert config.period_bounds[:2] == (start, end) and end - start == 31 * 86_400 + 3_600
    assert config.period_bounds[2] - config.period_bounds[1] == 30 * 86_400  # November


def test_double_submission_is_refused_with_a_named_error(anvil):
    w3 = anvil.w3()
    vendor, customer, relayer = w3.eth.accounts[3:6]
    terms = load_terms(EXAMPLE / "terms.yaml")
    oracles = [Account.from_key(k).address for k in DEMO_ORACLE_KEYS]
    token = deploy(w3, "TestToken", vendor, "T", "T", 6)
    config = config_from_terms(terms, customer=customer, asset=token.address, oracles=oracles, threshold=2)
    agreement, _ = create_agreement(w3, deploy_factory(w3, vendor), vendor, config)
    transact(w3, token.functions.mint(vendor, 10**12), vendor, "mint")
    deposit(w3, agreement, vendor, 10**12)
    result = compute_period(terms, load_evidence(EXAMPLE / "evidence", terms), period_labels(terms)[0])
    report = report_from_result(result, 0)
    sigs = sign_for(report, config, w3.eth.chain_id, agreement.address, DEMO_ORACLE_KEYS[1:])
    if w3.eth.get_block("latest")["timestamp"] <= config.period_bounds[1]:
        w3.provider.make_request("evm_mine", [config.period_bounds[1] + 1])
    submit_report(w3, agreement, config, report, sigs, relayer)
    assert token.functions.balanceOf(customer).call() == result.total_credit
    with pytest.raises(ChainError) as err:
        submit_report(w3, agreement, config, report, sigs, relayer)
    assert err.value.error == "PeriodAlreadySettled(0)"
    assert token.functions.balanceOf(customer).call() == result.total_credit  # nothing paid twice


def test_demo_runs_on_a_given_rpc_url(anvil):
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    before = w3.eth.block_number
    run_demo(rpc=anvil.url)
    assert w3.eth.block_number > before
