"""Unit tests: every external function of Agreement and AgreementFactory, and every revert."""
from __future__ import annotations

import pytest
from brownie import Agreement, chain, web3
from eth_utils import keccak

from oracle.chain.config import Config, ObjectiveSchedule
from oracle.chain.report import REPORT_TYPEHASH, make_report
from oracle.chain.signing import pack_signatures, sign_digest, sign_report
from tests.contracts.conftest import (
    EVIDENCE,
    ORACLE_KEYS,
    ORACLES,
    TERMS_HASH,
    ZERO,
    all_met,
    create,
    end_period,
    make_config,
    reverts,
    signed,
    submit,
)

FUND = 20_000


def fund(agreement, vendor, amount=FUND):
    agreement.deposit(amount, {"from": vendor, "value": amount})


# ---------------------------------------------------------------- factory and set-up

def test_factory_creates_clone_and_emits_discoverable_event(factory, vendor, customer, cfg):
    agreement, tx = create(factory, vendor, cfg)
    ev = tx.events["AgreementCreated"]
    assert (ev["vendor"], ev["customer"], ev["agreement"]) == (vendor, customer, agreement.address)
    assert ev["termsHash"] == "0x" + TERMS_HASH.hex()
    code = web3.eth.get_code(agreement.address).hex().removeprefix("0x")
    impl = factory.implementation().lower()[2:]
    assert code == f"363d3d373d3d3d363d73{impl}5af43d82803e903d91602b57fd5bf3"


def test_initialize_stores_parties_and_emits_config(factory, vendor, customer, cfg):
    agreement, tx = create(factory, vendor, cfg)
    assert agreement.vendor() == vendor
    assert agreement.customer() == customer
    assert agreement.asset() == ZERO
    assert agreement.termsHash() == "0x" + TERMS_HASH.hex()
    assert agreement.configHash() == "0x" + cfg.hash().hex()
    assert agreement.periodCount() == 3 and agreement.nextPeriod() == 0
    # worst case: both sites lose availability (2 x 1000) and max-down (2 x 250), uptime 30% of 5000
    assert agreement.maxCreditPerPeriod() == cfg.max_credit_per_period() == 2_000 + 500 + 1_500
    ev = tx.events["AgreementConfigured"]
    assert Config.decode(bytes(ev["config"])) == cfg


def test_initialize_twice_reverts(eth_agreement, vendor, cfg):
    with reverts("InvalidInitialization"):
        eth_agreement.initialize(vendor, cfg.encoded(), b"", {"from": vendor})


def test_implementation_cannot_be_initialized(factory, vendor, cfg):
    impl = Agreement.at(factory.implementation())
    with reverts("InvalidInitialization"):
        impl.initialize(vendor, cfg.encoded(), b"", {"from": vendor})


@pytest.mark.parametrize("change, error", [
    (dict(monthly_fee=0), ("ZeroMonthlyFee",)),
    (dict(cap_bps=10_001), ("CreditCapTooHigh", 10_001)),
    (dict(periods=0), ("TooFewBounds", 1)),
    (dict(period_len=0), ("BoundsNotAscending", 1)),
    (dict(objectives=()), ("NoObjectives",)),
    (dict(sites=()), ("NoSites", 0)),
    (dict(threshold=0), ("InvalidOracleSet",)),
    (dict(threshold=4), ("InvalidOracleSet",)),
])
def test_invalid_config_reverts(factory, vendor, customer, start, change, error):
    with reverts(*error):
        factory.createAgreement(make_config(start, customer, **change).encoded(), {"from": vendor})


def test_invalid_tiers_and_scope_revert(factory, vendor, customer, start):
    good = make_config(start, customer, objectives=(ObjectiveSchedule(0, 0, ((9000, 1000),)),)).encoded()
    tiers_at = len(good) - 4
    bad_tier = good[:tiers_at] + (9000).to_bytes(2, "big") + (10_001).to_bytes(2, "big")
    with reverts("InvalidTier", 0, 0):
        factory.createAgreement(bad_tier, {"from": vendor})
    no_tiers = good[:tiers_at - 1] + b"\x00"
    with reverts("NoTiers", 0):
        factory.createAgreement(no_tiers, {"from": vendor})
    scope_at = tiers_at - 14
    bad_scope = good[:scope_at] + b"\x07" + good[scope_at + 1:]
    with reverts("UnknownScope", 0, 7):
        factory.createAgreement(bad_scope, {"from": vendor})
    with reverts("InvalidSettlement", len(good)):  # a trailing byte is a (truncated) settlement section
        factory.createAgreement(good + b"\x00", {"from": vendor})


def test_unsorted_or_duplicate_oracles_revert(factory, vendor, customer, cfg):
    blob = bytearray(cfg.encoded())
    a, b = blob[88:108], blob[108:128]
    blob[88:108], blob[108:128] = b, a  # descending
    with reverts("InvalidOracleSet"):
        factory.createAgreement(bytes(blob), {"from": vendor})
    blob[88:108] = blob[108:128]  # duplicate
    with reverts("InvalidOracleSet"):
        factory.createAgreement(bytes(blob), {"from": vendor})


def test_zero_customer_and_codeless_asset_revert(factory, vendor, start, outsider):
    with reverts("ZeroAddress"):
        factory.createAgreement(make_config(start, ZERO).encoded(), {"from": vendor})
    with reverts("AssetHasNoCode", outsider.address):
        factory.createAgreement(make_config(start, outsider, outsider).encoded(), {"from": vendor})


# ---------------------------------------------------------------- reports

def test_report_pays_scheduled_credit_to_customer(eth_agreement, cfg, vendor, customer, outsider):
    fund(eth_agreement, vendor)
    end_period(cfg, 0)
    att = all_met(cfg)
    att[0][1] = 8_999   # site 2 availability below 9000: 100% of its 1000 fee
    att[2][0] = 9_600   # estate uptime below 9900 but not 9500: 10% of 5000
    before = customer.balance()
    tx = submit(eth_agreement, cfg, 0, att, outsider)
    assert tx.return_value == 1_500 == cfg.credit(att)
    assert customer.balance() - before == 1_500
    assert tx.events["ReportAccepted"]["credit"] == 1_500
    assert tx.events["CreditPaid"]["amount"] == 1_500
    assert eth_agreement.nextPeriod() == 1


def test_report_with_no_credit_pays_nothing(eth_agreement, cfg, vendor, customer, outsider):
    fund(eth_agreement, vendor)
    end_period(cfg, 0)
    before = customer.balance()
    tx = submit(eth_agreement, cfg, 0, all_met(cfg), outsider)
    assert tx.return_value == 0 and customer.balance() == before
    assert "CreditPaid" not in tx.events


def test_credit_is_capped(factory, vendor, customer, outsider, start):
    cfg = make_config(start, customer, cap_bps=1_000)  # cap: 500
    agreement, _ = create(factory, vendor, cfg)
    fund(agreement, vendor)
    end_period(cfg, 0)
    tx = submit(agreement, cfg, 0, [[0, 0], [0, 0], [0]], outsider)
    assert tx.return_value == 500


def test_report_with_wrong_config_reverts(eth_agreement, cfg, outsider, start, customer):
    end_period(cfg, 0)
    other = make_config(start, customer, monthly_fee=9_999)
    att, sigs = signed(eth_agreement, cfg, 0, all_met(cfg))
    with reverts("ConfigMismatch", cfg.hash(), other.hash()):
        eth_agreement.submitReport(other.encoded(), 0, TERMS_HASH, EVIDENCE, att, sigs, {"from": outsider})


def test_report_before_period_end_reverts(eth_agreement, cfg, outsider):
    with reverts("PeriodNotEnded", 0, cfg.period_bounds[1]):
        submit(eth_agreement, cfg, 0, all_met(cfg), outsider)


def test_report_out_of_order_reverts(eth_agreement, cfg, outsider):
    end_period(cfg, 1)
    with reverts("PeriodOutOfOrder", 1, 0):
        submit(eth_agreement, cfg, 1, all_met(cfg), outsider)


def test_report_past_the_last_period_reverts(eth_agreement, cfg, outsider):
    for p in range(3):
        end_period(cfg, p)  # each report inside its deadline
        submit(eth_agreement, cfg, p, all_met(cfg), outsider)
    with reverts("NoSuchPeriod", 3):
        submit(eth_agreement, cfg, 3, all_met(cfg), outsider)


def test_malformed_attainments_revert(eth_agreement, cfg, outsider):
    end_period(cfg, 0)
    for att, offset in [([[10_000], [10_000, 10_000], [10_000]], 0),       # one site missing
                        ([[10_000, 10_000], [10_000, 10_000], [10_000, 10_000]], 12),  # two estate values
                        ([[10_000, 10_000], [10_000, 10_000]], 12)]:     # objective missing
        with reverts("MalformedAttainments", offset):
            submit(eth_agreement, cfg, 0, att, outsider)


def test_attainment_above_100_percent_reverts(eth_agreement, cfg, outsider):
    end_period(cfg, 0)
    att = bytearray(make_report(0, TERMS_HASH, EVIDENCE, all_met(cfg)).packed_attainments)
    att[2:4] = (10_001).to_bytes(2, "big")  # pack_attainments refuses this, so build it by hand
    digest = bytes(eth_agreement.reportDigest(0, 0, TERMS_HASH, EVIDENCE, bytes(att)))
    sigs = pack_signatures({cfg.oracle_index(ORACLES[i]): sign_digest(digest, ORACLE_KEYS[i]) for i in range(2)})
    with reverts("AttainmentOutOfRange", 2, 10001):
        eth_agreement.submitReport(cfg.encoded(), 0, TERMS_HASH, EVIDENCE, bytes(att), sigs, {"from": outsider})


def test_eip712_domain_binds_chain_and_agreement(eth_agreement):
    fields, name, version, chain_id, verifying, salt, extensions = eth_agreement.eip712Domain()
    assert (name, version, chain_id, verifying) == ("slacomp Agreement", "1", chain.id, eth_agreement.address)


def test_report_digest_and_typehash_match_python(eth_agreement, cfg):
    report = make_report(2, TERMS_HASH, EVIDENCE, [[1, 2], [3, 4], [5]])
    assert bytes(eth_agreement.REPORT_TYPEHASH()) == REPORT_TYPEHASH
    onchain = eth_agreement.reportDigest(2, 0, TERMS_HASH, EVIDENCE, report.packed_attainments)
    assert bytes(onchain) == report.digest(chain.id, eth_agreement.address)


# ---------------------------------------------------------------- escrow

def test_deposit_eth_and_token(eth_agreement, token_agreement, token, vendor, outsider):
    tx = eth_agreement.deposit(1_000, {"from": outsider, "value": 1_000})
    assert tx.events["Deposited"]["amount"] == 1_000 and eth_agreement.escrowBalance() == 1_000
    token.mint(outsider, 5_000, {"from": outsider})
    token.approve(token_agreement, 5_000, {"from": outsider})
    token_agreement.deposit(5_000, {"from": outsider})
    assert token_agreement.escrowBalance() == 5_000 == token.balanceOf(token_agreement)


def test_plain_eth_transfer_is_a_deposit(eth_agreement, outsider):
    tx = outsider.transfer(eth_agreement, 777)
    assert tx.events["Deposited"]["amount"] == 777


def test_deposit_mismatch_and_zero_revert(eth_agreement, token_agreement, vendor):
    with reverts("DepositMismatch", 10, 9):
        eth_agreement.deposit(10, {"from": vendor, "value": 9})
    with reverts("DepositMismatch", 0, 1):
        token_agreement.deposit(10, {"from": vendor, "value": 1})
    with reverts("ZeroAmount"):
        eth_agreement.deposit(0, {"from": vendor})
    with reverts("DepositMismatch", 0, 5):
        vendor.transfer(token_agreement, 5)


def test_token_deposit_without_allowance_reverts(token_agreement, token, outsider):
    token.mint(outsider, 100, {"from": outsider})
    with reverts("TransferFailed", token_agreement.address, 100):
        token_agreement.deposit(100, {"from": outsider})


def test_reserve_and_withdraw(eth_agreement, cfg, vendor, outsider):
    fund(eth_agreement, vendor)
    assert eth_agreement.reserve() == 3 * cfg.max_credit_per_period() == 12_000
    assert eth_agreement.withdrawable() == 8_000
    with reverts("ExceedsWithdrawable", 8001, 8000):
        eth_agreement.withdraw(8_001, {"from": vendor})
    with reverts("NotVendor", outsider.address):
        eth_agreement.withdraw(1, {"from": outsider})
    with reverts("ZeroAmount"):
        eth_agreement.withdraw(0, {"from": vendor})
    before = vendor.balance()
    tx = eth_agreement.withdraw(8_000, {"from": vendor})
    assert vendor.balance() - before + tx.gas_used * tx.gas_price == 8_000
    assert tx.events["Withdrawn"]["amount"] == 8_000
    end_period(cfg, 0)
    submit(eth_agreement, cfg, 0, all_met(cfg), outsider)
    assert eth_agreement.withdrawable() == 4_000  # one period's reserve released


def test_short_escrow_records_debt_and_deposit_repays_it(eth_agreement, cfg, vendor, customer, outsider):
    fund(eth_agreement, vendor, 1_000)
    end_period(cfg, 0)
    tx = submit(eth_agreement, cfg, 0, [[0, 0], [10_000, 10_000], [10_000]], outsider)  # credit 2000
    assert tx.events["CreditPaid"]["amount"] == 1_000
    assert tx.events["DebtRecorded"]["amount"] == 1_000 and eth_agreement.debt() == 1_000
    assert eth_agreement.reserve() == 2 * 4_000 + 1_000
    before = customer.balance()
    tx = eth_agreement.deposit(400, {"from": vendor, "value": 400})
    assert customer.balance() - before == 400 and eth_agreement.debt() == 600
    assert tx.events["DebtRepaid"]["amount"] == 400
    eth_agreement.deposit(10_000, {"from": vendor, "value": 10_000})
    assert eth_agreement.debt() == 0 and customer.balance() - before == 1_000


def test_repay_debt_after_direct_token_transfer(token_agreement, token_cfg, token, vendor, customer, outsider):
    end_period(token_cfg, 0)
    submit(token_agreement, token_cfg, 0, [[0, 10_000], [10_000, 10_000], [10_000]], outsider)
    assert token_agreement.debt() == 1_000
    token.mint(token_agreement, 600, {"from": outsider})  # sent without deposit()
    token_agreement.repayDebt({"from": outsider})
    assert token.balanceOf(customer) == 600 and token_agreement.debt() == 400


def test_last_period_returns_escrow_to_vendor(eth_agreement, cfg, vendor, outsider):
    fund(eth_agreement, vendor)
    for p in range(2):
        end_period(cfg, p)
        submit(eth_agreement, cfg, p, all_met(cfg), outsider)
    end_period(cfg, 2)
    before = vendor.balance()
    tx = submit(eth_agreement, cfg, 2, [[0, 10_000], [10_000, 10_000], [10_000]], outsider)
    assert tx.events["EscrowReturned"]["amount"] == FUND - 1_000
    assert vendor.balance() - before == FUND - 1_000 and eth_agreement.escrowBalance() == 0


def test_claim_reverts_for_others_and_when_empty(eth_agreement, customer, outsider):
    with reverts("NotCustomer", outsider.address):
        eth_agreement.claim(outsider, {"from": outsider})
    with reverts("NothingToClaim"):
        eth_agreement.claim(customer, {"from": customer})
    with reverts("ZeroAddress"):
        eth_agreement.claim(ZERO, {"from": customer})


# ---------------------------------------------------------------- oracle rotation

def test_rotation_needs_both_parties_then_new_set_signs(eth_agreement, cfg, vendor, customer, outsider):
    new = cfg.with_oracles(ORACLES[3:6], 2)
    tx = eth_agreement.proposeOracleSet(new.oracle_set(), {"from": vendor})
    assert bytes(tx.events["OracleSetProposed"]["oracleSet"]) == new.oracle_set()
    assert eth_agreement.configHash() == "0x" + cfg.hash().hex()  # not yet
    tx = eth_agreement.acceptOracleSet(cfg.encoded(), new.encoded(), {"from": customer})
    assert eth_agreement.configHash() == "0x" + new.hash().hex()
    assert bytes(tx.events["OracleSetChanged"]["config"]) == new.encoded()
    fund(eth_agreement, vendor)
    end_period(new, 0)
    report = make_report(0, TERMS_HASH, EVIDENCE, all_met(new))
    old_sigs = pack_signatures({i: sign_report(report, chain.id, eth_agreement.address, ORACLE_KEYS[i])
                                for i in range(2)})
    with reverts("NotAnOracle", 0, ORACLES[0]):  # the old oracles no longer count
        eth_agreement.submitReport(new.encoded(), 0, TERMS_HASH, EVIDENCE, report.packed_attainments, old_sigs,
                                   {"from": outsider})
    submit(eth_agreement, new, 0, all_met(new), outsider, keys=ORACLE_KEYS[3:5])
    assert eth_agreement.nextPeriod() == 1


def test_rotation_reverts(eth_agreement, cfg, vendor, customer, outsider):
    new = cfg.with_oracles(ORACLES[3:6], 2)
    with reverts("NoPendingOracleSet"):
        eth_agreement.acceptOracleSet(cfg.encoded(), new.encoded(), {"from": customer})
    with reverts("NotParty", outsider.address):
        eth_agreement.proposeOracleSet(new.oracle_set(), {"from": outsider})
    with reverts("InvalidOracleSet"):
        eth_agreement.proposeOracleSet(bytes([3, 2]) + new.oracle_set()[2:42], {"from": vendor})
    with reverts("InvalidOracleSet"):
        eth_agreement.proposeOracleSet(new.oracle_set() + b"\x00", {"from": vendor})
    eth_agreement.proposeOracleSet(new.oracle_set(), {"from": vendor})
    with reverts("ProposerCannotAccept", vendor.address):
        eth_agreement.acceptOracleSet(cfg.encoded(), new.encoded(), {"from": vendor})
    with reverts("NotParty", outsider.address):
        eth_agreement.acceptOracleSet(cfg.encoded(), new.encoded(), {"from": outsider})
    other = cfg.with_oracles(ORACLES[3:6], 3)
    with reverts("OracleSetMismatch", keccak(new.oracle_set()), keccak(other.oracle_set())):
        eth_agreement.acceptOracleSet(cfg.encoded(), other.encoded(), {"from": customer})
    sneaky = Config(new.customer, new.asset, new.terms_hash, 1, new.credit_cap_bps, new.site_fees,
                    new.objectives, new.period_bounds, new.oracles, new.threshold)  # fee changed too
    with reverts("ConfigMismatch", cfg.hash(), sneaky.hash()):
        eth_agreement.acceptOracleSet(cfg.encoded(), sneaky.encoded(), {"from": customer})
    with reverts("ConfigMismatch", cfg.hash(), sneaky.hash()):  # a stale/forged current config
        eth_agreement.acceptOracleSet(sneaky.encoded(), new.encoded(), {"from": customer})
    assert eth_agreement.configHash() == "0x" + cfg.hash().hex()
