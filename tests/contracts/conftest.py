"""Fixtures for the contract suite: a real chain (Anvil by default, Ganache with
--network ganache-cli), the factory, a USDC-like token, agreements in ETH and in the token,
and oracle keys that sign real EIP-712 reports."""
from __future__ import annotations

import brownie
import pytest
from brownie import Agreement, AgreementFactory, HostileCustomer, TestToken, accounts, chain, web3
from eth_account import Account
from eth_utils import keccak

from oracle.chain.config import Config, ObjectiveSchedule
from oracle.chain.report import make_report
from oracle.chain.signing import sign_for

DAY = 86_400
TERMS_HASH = keccak(text="terms of the test agreement")
EVIDENCE = keccak(text="evidence")
ORACLE_KEYS = [keccak(text=f"slacomp test oracle {i}") for i in range(7)]
ORACLES = [Account.from_key(k).address for k in ORACLE_KEYS]


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    """Every test starts from the same chain state."""


@pytest.fixture(scope="session")
def vendor():
    return accounts[0]


@pytest.fixture(scope="session")
def customer():
    return accounts[1]


@pytest.fixture(scope="session")
def outsider():
    return accounts[2]


@pytest.fixture(scope="module")
def factory(vendor):
    return AgreementFactory.deploy({"from": vendor})


@pytest.fixture(scope="module")
def token(vendor):
    return TestToken.deploy("Test USD", "TUSD", 6, {"from": vendor})


ZERO = "0x" + "00" * 20
OBJECTIVES = (
    ObjectiveSchedule(1, 0, ((9000, 10_000),)),               # site availability, per site
    ObjectiveSchedule(1, 0, ((9500, 2_500),)),                # site max-down, per site
    ObjectiveSchedule(0, 0, ((9900, 1_000), (9500, 3_000))),  # device uptime, estate
)


def make_config(start: int, customer, asset=ZERO, *, sites=(1_000, 1_000), oracles=ORACLES[:3],
                threshold=2, periods=3, monthly_fee=5_000, cap_bps=10_000, objectives=OBJECTIVES,
                period_len=30 * DAY, terms_hash=TERMS_HASH) -> Config:
    """A schedule like the seed's: per-site availability, per-site max-down, estate uptime."""
    bounds = tuple(start + i * period_len for i in range(periods + 1))
    return Config(str(customer), str(asset), terms_hash, monthly_fee, cap_bps, tuple(sites), tuple(objectives),
                  bounds, tuple(oracles), threshold)


def create(factory, vendor, cfg: Config, *, accept=True):
    """Create the agreement for `cfg`; by default its customer accepts it (periods settle only then)."""
    tx = factory.createAgreement["bytes"](cfg.encoded(), {"from": vendor})
    agreement = Agreement.at(tx.return_value)
    if accept and web3.eth.get_code(cfg.customer):  # a customer contract (HostileCustomer) accepts through exec
        HostileCustomer.at(cfg.customer).exec(agreement, agreement.accept.encode_input(), {"from": vendor})
    elif accept:
        agreement.accept({"from": cfg.customer})
    return agreement, tx


@pytest.fixture
def start():
    return web3.eth.get_block("latest").timestamp + 60


@pytest.fixture
def cfg(start, customer):
    return make_config(start, customer)


@pytest.fixture
def token_cfg(start, customer, token):
    return make_config(start, customer, token.address)


@pytest.fixture
def eth_agreement(factory, vendor, cfg):
    agreement, _ = create(factory, vendor, cfg)
    return agreement


@pytest.fixture
def token_agreement(factory, vendor, token_cfg):
    agreement, _ = create(factory, vendor, token_cfg)
    return agreement


def all_met(cfg: Config):
    """Attainments where every objective is met (no credit)."""
    return [[10_000] * (len(cfg.site_fees) if o.scope == 1 else 1) for o in cfg.objectives]


def signed(agreement, cfg: Config, period: int, attainments, keys=None, terms_hash=TERMS_HASH,
           evidence=EVIDENCE, chain_id=None):
    """(packed attainments, packed signatures) for a report signed by `keys` (default: M oracles)."""
    report = make_report(period, terms_hash, evidence, attainments)
    keys = ORACLE_KEYS[:cfg.threshold] if keys is None else keys
    sigs = sign_for(report, cfg, chain_id or chain.id, agreement.address, keys)
    return report.packed_attainments, sigs


def submit(agreement, cfg: Config, period: int, attainments, sender, **kw):
    att, sigs = signed(agreement, cfg, period, attainments, **kw)
    return agreement.submitReport(cfg.encoded(), period, kw.get("terms_hash", TERMS_HASH),
                                  kw.get("evidence", EVIDENCE), att, sigs, {"from": sender})


def end_period(cfg: Config, period: int):
    """Mine a block past the end of `period` (by timestamp, so it also holds after chain.revert())."""
    end = cfg.period_bounds[period + 1]
    if web3.eth.get_block("latest").timestamp <= end:
        web3.provider.make_request("evm_mine", [end + 1])  # brownie's chain.mine(timestamp) fails on Anvil


def reverts(error: str, *args):
    """brownie.reverts for a custom error, as brownie renders it: 'Name: arg1, arg2'."""
    def fmt(a):
        if isinstance(a, str) and a.startswith("0x") and len(a) == 42:
            return a.lower()
        return str(a)
    return brownie.reverts(f"{error}: " + ", ".join(fmt(a) for a in args))
