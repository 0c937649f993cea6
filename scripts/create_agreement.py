"""Create one agreement from a terms file through an existing factory.

    brownie run scripts/create_agreement.py main TERMS CUSTOMER ASSET ORACLES THRESHOLD [FACTORY]

TERMS: terms file (schema slacomp/v1). CUSTOMER: the customer's address. ASSET: an ERC-20
address, or `eth`. ORACLES: comma-separated oracle addresses. THRESHOLD: signatures needed.
FACTORY: the factory's address (default: the last one deployed in this brownie session).
The caller (see deploy_factory.deployer) becomes the vendor; the customer then accepts
(`agreement.accept()`, or `slacomp agreement accept`) before any period settles."""
from __future__ import annotations

from brownie import Agreement, AgreementFactory

from oracle.chain.config import ZERO_ADDRESS, config_from_terms
from oracle.core.terms import load_terms
from scripts.deploy_factory import deployer


def main(terms_path: str, customer: str, asset: str, oracles: str, threshold: str, factory: str | None = None):
    terms = load_terms(terms_path)
    config = config_from_terms(
        terms,
        customer=customer,
        asset=ZERO_ADDRESS if asset.lower() == "eth" else asset,
        oracles=[a.strip() for a in oracles.split(",") if a.strip()],
        threshold=int(threshold),
    )
    fac = AgreementFactory.at(factory) if factory else AgreementFactory[-1]
    tx = fac.createAgreement["bytes"](config.encoded(), {"from": deployer()})
    agreement = Agreement.at(tx.events["AgreementCreated"]["agreement"])
    print(f"Agreement {agreement.address}: {terms.agreement}, {config.period_count} periods, "
          f"termsHash {agreement.termsHash()}, oracles {config.threshold} of {len(config.oracles)}")
    return agreement, config
