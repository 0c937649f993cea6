"""Deploy the AgreementFactory (and with it the Agreement implementation).

    brownie run scripts/deploy_factory.py [--network NAME]

Uses brownie's accounts[0] on development networks, or the brownie account named by the
SLACOMP_ACCOUNT environment variable (`brownie accounts new NAME` stores an encrypted keystore)."""
from __future__ import annotations

import os

from brownie import AgreementFactory, accounts


def deployer():
    name = os.environ.get("SLACOMP_ACCOUNT")
    return accounts.load(name) if name else accounts[0]


def main():
    factory = AgreementFactory.deploy({"from": deployer()})
    print(f"AgreementFactory: {factory.address}")
    print(f"Agreement implementation: {factory.implementation()}")
    return factory
