"""The run command end to end (`slacomp demo --no-serve`) on its embedded Anvil, twice on the same
data folder; plus the single-agreement flow the other e2e tests build on."""
from __future__ import annotations

import pytest
from rich.console import Console

from oracle.chain import devchain
from oracle.chain.abi import contract
from oracle.core.terms import load_terms
from oracle.engine.replay import recompute
from oracle.evidence.bundle import find_bundle, load_bundle
from slacomp.cli import main as cli_main
from slacomp.demo import CUSTOMERS, run_demo
from tests.e2e.helpers import settle_example


@pytest.fixture(scope="module")
def anvil():
    with devchain.start("anvil") as chain:
        yield chain


def test_example_agreement_pays_exactly_the_engine_credit(anvil):
    settled = settle_example(anvil.w3())
    assert settled.engine_credit == 2_750 * 10**6  # north misses availability and max-down; estate uptime
    assert settled.paid == settled.customer_received == settled.engine_credit


def test_run_command_settles_every_agreement_once_and_is_idempotent(tmp_path):
    data = tmp_path / "demo"
    first = run_demo(data=data, console=Console(quiet=True))
    assert first.ok, first.outcomes
    assert [o.customer for o in first.outcomes] == [c.name for c in CUSTOMERS]
    assert {o.asset for o in first.outcomes} == {"ETH", "USDC"}
    assert sum(o.engine_credit > 0 for o in first.outcomes) >= 2  # a few sites miss their SLA
    assert all(o.sites_missed for o in first.outcomes if o.engine_credit)
    for o in first.outcomes:
        # the credit the contract paid is the KPI engine's credit for the simulated data
        assert o.paid + o.claimable + o.debt == o.engine_credit
        terms = load_terms(data / o.customer / "terms.yaml")
        assert terms.agreement.startswith(o.customer)

    second = run_demo(data=data, console=Console(quiet=True))  # same data folder: nothing new to pay
    assert second.ok
    assert [(o.address, o.tx_hash, o.paid) for o in second.outcomes] == \
        [(o.address, o.tx_hash, o.paid) for o in first.outcomes]
    # the same again through the command line (`slacomp demo --data DIR --no-serve`)
    assert cli_main(["demo", "--data", str(data), "--no-serve"]) == 0
    with devchain.start("anvil", state_dir=data) as chain:  # the persisted chain: one settlement each
        w3 = chain.w3()
        for o in second.outcomes:
            agreement = contract(w3, "Agreement", o.address)
            assert agreement.functions.nextPeriod().call() == 1
            logs = agreement.events.ReportAccepted().get_logs(from_block=0)
            assert len(logs) == 1
            bundle = load_bundle(find_bundle(data / "oracle" / "bundles", "0x" + logs[0]["args"]["evidenceRoot"].hex()))
            assert recompute(bundle).total_credit == logs[0]["args"]["credit"] == o.engine_credit
