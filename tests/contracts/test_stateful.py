"""Stateful property test: random sequences of deposit, withdraw, report, claim and oracle
rotation against a model, with the escrow invariants checked after every step.

Uses hypothesis's own RuleBasedStateMachine with chain.snapshot()/chain.revert() (brownie's
`state_machine` fixture is broken with this hypothesis pin)."""
from __future__ import annotations

from brownie import HostileCustomer, accounts, chain, web3
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from oracle.core.credit import BPS
from tests.contracts.conftest import EVIDENCE, ORACLE_KEYS, ORACLES, ZERO, create, end_period, make_config, signed

EXAMPLES = 60
STEPS = 30


def test_random_sequences_keep_escrow_invariants(factory, vendor, outsider):
    customer_contract = HostileCustomer.deploy({"from": vendor})
    cfg0 = make_config(web3.eth.get_block("latest").timestamp + 60, customer_contract.address, periods=4)
    agreement, _ = create(factory, vendor, cfg0)
    customer_eoa = accounts[3]
    chain.snapshot()
    stats = {"steps": 0, "reports": 0, "rejected_reports": 0, "credits": 0}

    class Machine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            chain.revert()
            self.cfg = cfg0
            self.keys = list(ORACLE_KEYS[:3])
            self.balance = 0
            self.deposits = self.payouts = self.withdrawals = 0
            self.claimable = self.debt = 0
            self.settled = 0
            self.mode = 0
            self.paid_periods: list[int] = []
            self.max_credit = cfg0.max_credit_per_period()

        # ---------------------------------------------------------- model helpers
        def _push_to_customer(self, amount):
            if self.mode == 0:
                self.balance -= amount
                self.payouts += amount
            else:
                self.claimable += amount

        def _free(self):
            return max(self.balance - self.claimable, 0)

        def _reserve(self):
            return (self.cfg.period_count - self.settled) * self.max_credit + self.debt + self.claimable

        # ---------------------------------------------------------- rules
        @rule(amount=st.integers(1, 12_000))
        def deposit(self, amount):
            agreement.deposit(amount, {"from": outsider, "value": amount})
            self.balance += amount
            self.deposits += amount
            pay = min(self.debt, self._free())
            self.debt -= pay
            if pay:
                self._push_to_customer(pay)

        @rule(amount=st.integers(1, 20_000))
        def withdraw(self, amount):
            allowed = max(self.balance - self._reserve(), 0)
            if amount > allowed:
                try:
                    agreement.withdraw(amount, {"from": vendor})
                except Exception as e:  # noqa: BLE001
                    assert "ExceedsWithdrawable" in str(e.revert_msg)
                else:
                    raise AssertionError("withdrawal above the reserve succeeded")
                return
            agreement.withdraw(amount, {"from": vendor})
            self.balance -= amount
            self.withdrawals += amount

        @rule(mode=st.sampled_from([0, 1]))
        def customer_behaviour(self, mode):
            customer_contract.setMode(mode, ZERO, b"", {"from": vendor})
            self.mode = mode

        @rule(data=st.data())
        def report(self, data):
            if self.settled >= self.cfg.period_count:
                return
            period = self.settled
            att = [[data.draw(st.sampled_from([0, 8_999, 9_400, 9_600, 9_950, BPS])) for _ in row]
                   for row in [[0] * len(self.cfg.site_fees)] * 2 + [[0]]]
            signers = data.draw(st.lists(st.sampled_from(self.keys), unique=True, min_size=1,
                                         max_size=len(self.keys)))
            end_period(self.cfg, period)
            a, sigs = signed(agreement, self.cfg, period, att, keys=signers)
            if len(signers) < self.cfg.threshold:
                try:
                    agreement.submitReport(self.cfg.encoded(), period, self.cfg.terms_hash,
                                           EVIDENCE, a, sigs, {"from": outsider})
                except Exception as e:  # noqa: BLE001
                    assert "InsufficientSignatures" in str(e.revert_msg)
                    stats["rejected_reports"] += 1
                    return
                raise AssertionError("a report with fewer than M signatures was accepted")
            tx = agreement.submitReport(self.cfg.encoded(), period, self.cfg.terms_hash, EVIDENCE, a, sigs,
                                        {"from": outsider})
            credit = self.cfg.credit(att)
            assert tx.return_value == credit <= self.cfg.monthly_fee * self.cfg.credit_cap_bps // BPS
            stats["reports"] += 1
            stats["credits"] += credit > 0
            self.paid_periods.append(period)
            self.settled += 1
            pay = min(credit, self._free())
            self.debt += credit - pay
            if pay:
                self._push_to_customer(pay)
            if self.settled == self.cfg.period_count and self.debt == 0 and self._free():
                returned = self._free()
                self.balance -= returned
                self.withdrawals += returned

        @rule()
        def claim(self):
            if self.claimable == 0:
                return
            customer_contract.exec(agreement, agreement.claim.encode_input(customer_eoa), {"from": vendor})
            self.balance -= self.claimable
            self.payouts += self.claimable
            self.claimable = 0

        @rule(data=st.data())
        def rotate(self, data):
            keys = data.draw(st.lists(st.sampled_from(ORACLE_KEYS), unique=True, min_size=1, max_size=5))
            threshold = data.draw(st.integers(1, len(keys)))
            addrs = [ORACLES[ORACLE_KEYS.index(k)] for k in keys]
            new = self.cfg.with_oracles(addrs, threshold)
            proposer, acceptor = data.draw(st.sampled_from([(vendor, customer_contract),
                                                            (customer_contract, vendor)]))
            call = lambda who, fn, *args: (  # noqa: E731
                customer_contract.exec(agreement, fn.encode_input(*args), {"from": vendor})
                if who == customer_contract else fn(*args, {"from": vendor}))
            call(proposer, agreement.proposeOracleSet, new.oracle_set())
            call(acceptor, agreement.acceptOracleSet, self.cfg.encoded(), new.encoded())
            self.cfg, self.keys = new, keys

        # ---------------------------------------------------------- invariants
        @invariant()
        def escrow_matches_the_books(self):
            stats["steps"] += 1
            on_chain = agreement.escrowBalance()
            assert on_chain == self.balance == self.deposits - self.payouts - self.withdrawals
            assert agreement.claimable() == self.claimable >= 0
            assert agreement.debt() == self.debt >= 0
            assert agreement.reserve() == self._reserve()

        @invariant()
        def each_period_paid_once_in_order(self):
            assert agreement.nextPeriod() == self.settled
            assert self.paid_periods == list(range(self.settled))

        @invariant()
        def config_is_the_models(self):
            assert agreement.configHash() == "0x" + self.cfg.hash().hex()

    run_state_machine_as_test(Machine, settings=settings(max_examples=EXAMPLES, stateful_step_count=STEPS,
                                                         deadline=None))
    print(f"stateful: {EXAMPLES} examples, {stats}")
    assert stats["reports"] >= 20  # the sequences really settled periods (typically 40-100)
    assert stats["credits"] > 0 and stats["rejected_reports"] > 0
