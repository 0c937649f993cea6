"""The brownie scripts the README shows: deploy the factory, create an agreement from a terms file."""
from __future__ import annotations

from brownie import AgreementFactory

from oracle.core.terms import load_terms, terms_hash
from scripts.create_agreement import main as create_agreement
from scripts.deploy_factory import main as deploy_factory
from tests.contracts.conftest import ORACLES
from tests.e2e.helpers import EXAMPLE


def test_deploy_factory_then_create_agreement_from_terms(customer):
    factory = deploy_factory()
    assert AgreementFactory[-1] == factory and factory.implementation() != "0x" + "00" * 20
    agreement, config = create_agreement(str(EXAMPLE / "terms.yaml"), customer.address, "eth",
                                         ",".join(ORACLES[:3]), "2")
    assert agreement.termsHash() == terms_hash(load_terms(EXAMPLE / "terms.yaml"))
    assert agreement.customer() == customer and agreement.configHash() == "0x" + config.hash().hex()
    assert agreement.periodCount() == 3
    assert not agreement.accepted()  # the customer accepts separately
    agreement.accept({"from": customer})
    assert agreement.accepted()
