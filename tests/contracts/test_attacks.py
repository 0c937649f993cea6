"""Attack suite: one test per attack on the agreement (issue 2's list)."""
from __future__ import annotations

import brownie
import pytest
from brownie import HostileCustomer, TestToken, chain, web3
from eth_account import Account
from eth_utils import keccak

from oracle.chain.report import make_report
from oracle.chain.signing import pack_signatures, sign_report, unpack_signatures
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

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MISS = lambda cfg: [[0] * len(cfg.site_fees), [10_000] * len(cfg.site_fees), [10_000]]  # noqa: E731


def _send(agreement, cfg, period, att_bytes, sigs, sender, terms_hash=TERMS_HASH):
    return agreement.submitReport(cfg.encoded(), period, terms_hash, EVIDENCE, att_bytes, sigs, {"from": sender})


@pytest.fixture
def funded(eth_agreement, vendor):
    eth_agreement.deposit(20_000, {"from": vendor, "value": 20_000})
    return eth_agreement


def test_replayed_report_reverts(funded, cfg, outsider):
    end_period(cfg, 0)
    att, sigs = signed(funded, cfg, 0, MISS(cfg))
    _send(funded, cfg, 0, att, sigs, outsider)
    with reverts("PeriodAlreadySettled", 0):
        _send(funded, cfg, 0, att, sigs, outsider)
    end_period(cfg, 1)
    # the same signatures cannot settle the next period: the period is signed
    with brownie.reverts(revert_pattern=r"NotAnOracle: 0, 0x[0-9a-f]{40}"):
        funded.submitReport.call(cfg.encoded(), 1, TERMS_HASH, EVIDENCE, att, sigs, {"from": outsider})


def test_report_signed_for_another_agreement_reverts(factory, vendor, funded, cfg, outsider):
    other, _ = create(factory, vendor, cfg)
    end_period(cfg, 0)
    att, sigs = signed(other, cfg, 0, MISS(cfg))  # signed for `other`'s domain
    with brownie.reverts(revert_pattern=r"NotAnOracle: 0, 0x[0-9a-f]{40}"):
        funded.submitReport.call(cfg.encoded(), 0, TERMS_HASH, EVIDENCE, att, sigs, {"from": outsider})
    assert funded.nextPeriod() == 0


def test_report_signed_for_another_chain_reverts(funded, cfg, outsider):
    end_period(cfg, 0)
    att, sigs = signed(funded, cfg, 0, MISS(cfg), chain_id=chain.id + 1)
    with pytest.raises(Exception) as e:
        _send(funded, cfg, 0, att, sigs, outsider)
    assert "NotAnOracle" in str(e.value.revert_msg)


def test_second_report_for_settled_period_with_other_numbers_reverts(funded, cfg, outsider):
    end_period(cfg, 0)
    submit(funded, cfg, 0, all_met(cfg), outsider)
    with reverts("PeriodAlreadySettled", 0):
        submit(funded, cfg, 0, MISS(cfg), outsider)


def test_report_before_period_end_reverts(funded, cfg, outsider):
    web3.provider.make_request("evm_mine", [cfg.period_bounds[1] - 1])  # one second before the end
    with reverts("PeriodNotEnded", 0, cfg.period_bounds[1]):
        submit(funded, cfg, 0, MISS(cfg), outsider)


def test_forged_signature_from_unknown_key_reverts(funded, cfg, outsider):
    end_period(cfg, 0)
    report = make_report(0, TERMS_HASH, EVIDENCE, MISS(cfg))
    forger = keccak(text="forger")
    sigs = pack_signatures({0: sign_report(report, chain.id, funded.address, forger),
                            1: sign_report(report, chain.id, funded.address, ORACLE_KEYS[1])})
    with reverts("NotAnOracle", 0, Account.from_key(forger).address):
        _send(funded, cfg, 0, report.packed_attainments, sigs, outsider)


def test_duplicated_signature_reverts(funded, cfg, outsider):
    end_period(cfg, 0)
    att, sigs = signed(funded, cfg, 0, MISS(cfg))
    first = sigs[:66]
    with reverts("SignatureOrder", 1):
        _send(funded, cfg, 0, att, first + first, outsider)


def test_non_oracle_signer_reverts(funded, cfg, outsider):
    end_period(cfg, 0)
    report = make_report(0, TERMS_HASH, EVIDENCE, MISS(cfg))
    good, slot = cfg.oracle_index(ORACLES[0]), cfg.oracle_index(ORACLES[1])
    sigs = pack_signatures({good: sign_report(report, chain.id, funded.address, ORACLE_KEYS[0]),
                            slot: sign_report(report, chain.id, funded.address, ORACLE_KEYS[5])})
    with reverts("NotAnOracle", int(slot > good), ORACLES[5]):
        _send(funded, cfg, 0, report.packed_attainments, sigs, outsider)


def test_out_of_range_oracle_index_reverts(funded, cfg, outsider):
    end_period(cfg, 0)
    att, sigs = signed(funded, cfg, 0, MISS(cfg))
    entries = unpack_signatures(sigs)
    bad = pack_signatures({entries[0][0]: entries[0][1], 9: entries[1][1]})
    with reverts("SignatureOrder", 1):
        _send(funded, cfg, 0, att, bad, outsider)


def test_malleable_high_s_signature_reverts(funded, cfg, outsider):
    end_period(cfg, 0)
    att, sigs = signed(funded, cfg, 0, MISS(cfg))
    (i0, s0), rest = unpack_signatures(sigs)[0], unpack_signatures(sigs)[1:]
    r, s, v = s0[:32], int.from_bytes(s0[32:64], "big"), s0[64]
    flipped = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # same signer, high s
    assert Account._recover_hash(bytes(funded.reportDigest(0, 0, TERMS_HASH, EVIDENCE, att)),
                                 vrs=(55 - v, int.from_bytes(r, "big"), SECP256K1_N - s)) in ORACLES
    with reverts("HighSSignature", 0):
        _send(funded, cfg, 0, att, pack_signatures([(i0, flipped), *rest]), outsider)


def test_invalid_v_reverts(funded, cfg, outsider):
    end_period(cfg, 0)
    att, sigs = signed(funded, cfg, 0, MISS(cfg))
    broken = bytearray(sigs)
    broken[65] = 29
    with reverts("InvalidSignature", 0):
        _send(funded, cfg, 0, att, bytes(broken), outsider)


def test_malformed_signature_blob_reverts(funded, cfg, outsider):
    end_period(cfg, 0)
    att, sigs = signed(funded, cfg, 0, MISS(cfg))
    with reverts("MalformedSignatures", len(sigs) - 1):
        _send(funded, cfg, 0, att, sigs[:-1], outsider)
    with reverts("MalformedSignatures", 0):
        _send(funded, cfg, 0, att, b"", outsider)


def test_m_minus_one_signatures_revert(funded, cfg, outsider):
    end_period(cfg, 0)
    att, sigs = signed(funded, cfg, 0, MISS(cfg), keys=ORACLE_KEYS[:1])
    with reverts("InsufficientSignatures", 1, 2):
        _send(funded, cfg, 0, att, sigs, outsider)


def test_wrong_terms_hash_reverts(funded, cfg, outsider):
    end_period(cfg, 0)
    other = keccak(text="other terms")
    att, sigs = signed(funded, cfg, 0, MISS(cfg), terms_hash=other)
    with reverts("TermsHashMismatch", TERMS_HASH, other):
        _send(funded, cfg, 0, att, sigs, outsider, terms_hash=other)


@pytest.fixture
def hostile(vendor):
    return HostileCustomer.deploy({"from": vendor})


def _hostile_agreement(factory, vendor, hostile, start):
    cfg = make_config(start, hostile.address)
    agreement, _ = create(factory, vendor, cfg)
    agreement.deposit(20_000, {"from": vendor, "value": 20_000})
    return agreement, cfg


@pytest.mark.parametrize("mode", [1, 3], ids=["reverting", "gas-burning"])
def test_reverting_customer_gets_claimable_credit(factory, vendor, hostile, start, outsider, customer, mode):
    agreement, cfg = _hostile_agreement(factory, vendor, hostile, start)
    hostile.setMode(mode, ZERO, b"", {"from": vendor})
    end_period(cfg, 0)
    tx = submit(agreement, cfg, 0, MISS(cfg), outsider)
    assert tx.events["CreditDeferred"]["amount"] == 2_000
    assert agreement.claimable() == 2_000 and agreement.nextPeriod() == 1
    before = customer.balance()
    hostile.exec(agreement, agreement.claim.encode_input(customer), {"from": vendor})
    assert customer.balance() - before == 2_000 and agreement.claimable() == 0


def test_reentrant_customer_cannot_reenter(factory, vendor, hostile, start, outsider):
    agreement, cfg = _hostile_agreement(factory, vendor, hostile, start)
    reentrancy = keccak(text="ReentrancyGuardReentrantCall()")[:4]  # OpenZeppelin's ReentrancyGuard
    # on receipt of each period's credit, the customer re-enters a money path of the agreement
    # (short calls: a push forwards 50,000 gas, so a long re-entry would simply run out of gas)
    payloads = [agreement.repayDebt.encode_input(), agreement.deposit.encode_input(1),
                agreement.claim.encode_input(hostile)]
    for period, payload in enumerate(payloads):
        hostile.setMode(2, agreement, payload, {"from": vendor})
        end_period(cfg, period)
        tx = submit(agreement, cfg, period, MISS(cfg), outsider)
        assert hostile.reentered() is False and bytes(hostile.reentryError()) == reentrancy
        assert tx.events["CreditPaid"]["amount"] == 2_000
    assert agreement.nextPeriod() == 3 and agreement.claimable() == 0
    assert hostile.balance() == 3 * 2_000  # each period's credit, once
    assert agreement.escrowBalance() == 0  # after the last period the rest went back to the vendor


@pytest.fixture
def fee_token(vendor):
    token = TestToken.deploy("Fee USD", "FUSD", 6, {"from": vendor})
    token.setFeeBps(100, {"from": vendor})  # 1% on every transfer
    return token


def test_fee_on_transfer_token_credits_what_arrived(factory, vendor, customer, start, fee_token, outsider):
    cfg = make_config(start, customer, fee_token.address)
    agreement, _ = create(factory, vendor, cfg)
    fee_token.mint(vendor, 10_000, {"from": vendor})
    fee_token.approve(agreement, 10_000, {"from": vendor})
    tx = agreement.deposit(10_000, {"from": vendor})
    assert tx.events["Deposited"]["amount"] == 9_900 == agreement.escrowBalance()
    end_period(cfg, 0)
    submit(agreement, cfg, 0, MISS(cfg), outsider)
    assert agreement.escrowBalance() == 9_900 - 2_000  # the agreement paid the full credit
    assert fee_token.balanceOf(customer) == 1_980        # the token took its fee in transit


def test_blocked_customer_token_credit_stays_claimable(token_agreement, token_cfg, token, vendor, customer,
                                                       outsider):
    token.mint(vendor, 20_000, {"from": vendor})
    token.approve(token_agreement, 20_000, {"from": vendor})
    token_agreement.deposit(20_000, {"from": vendor})
    token.setBlocked(customer, True, {"from": vendor})
    end_period(token_cfg, 0)
    tx = submit(token_agreement, token_cfg, 0, MISS(token_cfg), outsider)
    assert tx.events["CreditDeferred"]["amount"] == 2_000 and token_agreement.claimable() == 2_000
    with reverts("TransferFailed", customer.address, 2_000):
        token_agreement.claim(customer, {"from": customer})
    token_agreement.claim(outsider, {"from": customer})  # to another address of the customer's choice
    assert token.balanceOf(outsider) == 2_000 and token_agreement.claimable() == 0


def test_reverting_token_on_deposit_reverts(token_agreement, token, vendor):
    token.mint(vendor, 100, {"from": vendor})
    token.approve(token_agreement, 100, {"from": vendor})
    token.setBlocked(token_agreement, True, {"from": vendor})
    with reverts("TransferFailed", token_agreement.address, 100):
        token_agreement.deposit(100, {"from": vendor})


def test_vendor_cannot_withdraw_below_reserve(funded, cfg, vendor):
    reserve = funded.reserve()
    assert reserve == 3 * cfg.max_credit_per_period()
    with reverts("ExceedsWithdrawable", 20_000, 20_000 - reserve):
        funded.withdraw(20_000, {"from": vendor})
    funded.withdraw(20_000 - reserve, {"from": vendor})
    assert funded.escrowBalance() == reserve


def test_claimable_credit_is_part_of_the_reserve(factory, vendor, hostile, start, outsider):
    agreement, cfg = _hostile_agreement(factory, vendor, hostile, start)
    hostile.setMode(1, ZERO, b"", {"from": vendor})
    end_period(cfg, 0)
    submit(agreement, cfg, 0, MISS(cfg), outsider)
    assert agreement.reserve() == 2 * cfg.max_credit_per_period() + 2_000
    with reverts("ExceedsWithdrawable", 20_000 - 8_000, 20_000 - 8_000 - 2_000):
        agreement.withdraw(20_000 - 8_000, {"from": vendor})


def test_zero_address_and_zero_amount_inputs_revert(funded, factory, vendor, customer, start):
    with reverts("ZeroAddress"):
        factory.createAgreement(make_config(start, ZERO).encoded(), {"from": vendor})
    with reverts("InvalidOracleSet"):
        factory.createAgreement(make_config(start, customer, oracles=[ZERO, ORACLES[0]], threshold=1).encoded(),
                                {"from": vendor})
    with reverts("ZeroAmount"):
        funded.deposit(0, {"from": vendor})
    with reverts("ZeroAmount"):
        funded.withdraw(0, {"from": vendor})
    with reverts("ZeroAddress"):
        funded.claim(ZERO, {"from": customer})


def test_oracle_rotation_by_one_party_alone_fails(funded, cfg, vendor, customer, outsider):
    evil = cfg.with_oracles([Account.from_key(keccak(text="vendor's puppet")).address], 1)
    funded.proposeOracleSet(evil.oracle_set(), {"from": vendor})
    with reverts("ProposerCannotAccept", vendor.address):
        funded.acceptOracleSet(cfg.encoded(), evil.encoded(), {"from": vendor})
    with reverts("NotParty", outsider.address):
        funded.acceptOracleSet(cfg.encoded(), evil.encoded(), {"from": outsider})
    assert funded.configHash() == "0x" + cfg.hash().hex()
    # a customer-side proposal cannot be accepted by the customer either
    funded.proposeOracleSet(evil.oracle_set(), {"from": customer})
    with reverts("ProposerCannotAccept", customer.address):
        funded.acceptOracleSet(cfg.encoded(), evil.encoded(), {"from": customer})
