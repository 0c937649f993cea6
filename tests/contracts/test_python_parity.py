"""Python and Solidity agree: the credit function on thousands of random inputs, the packed
Config (hash and layout), and the EIP-712 report type."""
from __future__ import annotations

import random

import pytest
from brownie import Agreement
from eth_utils import keccak

from oracle.chain.config import Config, ObjectiveSchedule, pack_attainments
from oracle.chain.report import REPORT_TYPE, make_report
from oracle.core.credit import BPS
from tests.contracts.conftest import ORACLES, ZERO, create, make_config

CASES = 2_000


def random_tiers(rng: random.Random) -> tuple[tuple[int, int], ...]:
    n = rng.randint(1, 4)
    belows = sorted(rng.sample(range(1, BPS + 1), n), reverse=True)
    credits = sorted(rng.randint(0, BPS) for _ in range(n))
    return tuple(zip(belows, credits))


def random_case(rng: random.Random) -> tuple[Config, list[list[int]]]:
    sites = tuple(rng.choice([0, 1, rng.randint(1, 10**6), rng.randint(1, 2**96 - 1)])
                  for _ in range(rng.randint(1, 6)))
    objectives, attainments = [], []
    for _ in range(rng.randint(1, 4)):
        scope = rng.randint(0, 2)
        device_fee = rng.choice([0, rng.randint(1, 10**9)])
        objectives.append(ObjectiveSchedule(scope, device_fee, random_tiers(rng)))
        n = 1 if scope == 0 else len(sites) if scope == 1 else rng.randint(0, 8)
        attainments.append([rng.choice([0, BPS, rng.randint(0, BPS), rng.randint(BPS - 200, BPS)])
                            for _ in range(n)])
    monthly_fee = rng.choice([1, rng.randint(1, 10**12), 2**96 - 1])
    cfg = Config(ORACLES[0], ZERO, keccak(text="t"), monthly_fee, rng.randint(0, BPS), sites,
                 tuple(objectives), (1, 2), (ORACLES[0],), 1)
    return cfg, attainments


@pytest.fixture(scope="module")
def calculator(factory):
    return Agreement.at(factory.implementation())


def test_credit_function_matches_python_on_random_inputs(calculator):
    rng = random.Random(20261129)
    nonzero = 0
    for _ in range(CASES):
        cfg, att = random_case(rng)
        expected = cfg.credit(att)
        assert calculator.creditFor(cfg.encoded(), pack_attainments(att)) == expected, (cfg, att)
        nonzero += expected > 0
    assert nonzero > CASES // 4  # the cases exercise real credits, not just zeros


def test_config_hash_and_layout_match(factory, vendor, customer, start):
    cfg = make_config(start, customer, sites=(7, 8, 9), oracles=ORACLES[:5], threshold=3, periods=12)
    agreement, tx = create(factory, vendor, cfg)
    assert agreement.configHash() == "0x" + cfg.hash().hex()
    assert agreement.periodCount() == 12 and agreement.maxCreditPerPeriod() == cfg.max_credit_per_period()
    assert Config.decode(bytes(tx.events["AgreementConfigured"]["config"])) == cfg


def test_report_type_string_is_the_contracts(calculator):
    assert bytes(calculator.REPORT_TYPEHASH()) == keccak(text=REPORT_TYPE)
    assert REPORT_TYPE == ("Report(uint32 period,uint32 revision,bytes32 termsHash,bytes32 evidenceRoot,"
                           "bytes attainments)")
    report = make_report(1, keccak(text="a"), keccak(text="b"), [[1]])
    assert report.struct_hash() != make_report(2, keccak(text="a"), keccak(text="b"), [[1]]).struct_hash()
