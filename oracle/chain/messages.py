"""The other EIP-712 messages of an agreement: the arbiters' `Resolution` of a disputed period and
the customer's `Acceptance` of the agreement (under the agreement's domain, or under the factory's
when the customer accepts before the agreement exists). The contract's typehashes are checked
against these strings by tests/contracts/test_settlement.py."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_utils.crypto import keccak

from oracle.chain.config import pack_attainments
from oracle.chain.report import DOMAIN_TYPEHASH, DOMAIN_VERSION, domain_separator, typed_digest
from oracle.core.addresses import checksum

RESOLUTION_TYPE = "Resolution(uint32 period,bytes attainments,bytes32 evidenceRoot)"
ACCEPTANCE_TYPE = "Acceptance(bytes32 configHash,address vendor)"
FACTORY_DOMAIN_NAME = "slacomp AgreementFactory"


@dataclass(frozen=True)
class Resolution:
    """M arbiters' attainments for a disputed period (bps per objective and subject, terms order)."""

    period: int
    attainments: tuple[tuple[int, ...], ...]
    evidence_root: bytes

    def __post_init__(self) -> None:
        if len(self.evidence_root) != 32:
            raise ValueError("evidence_root must be 32 bytes")
        if not 0 <= self.period < 2**32:
            raise ValueError(f"period {self.period} is not a uint32")
        object.__setattr__(self, "attainments", tuple(tuple(int(b) for b in row) for row in self.attainments))

    @property
    def packed_attainments(self) -> bytes:
        return pack_attainments(self.attainments)

    def struct_hash(self) -> bytes:
        return keccak(keccak(text=RESOLUTION_TYPE) + self.period.to_bytes(32, "big")
                      + keccak(self.packed_attainments) + self.evidence_root)

    def digest(self, chain_id: int, agreement: str) -> bytes:
        """The digest the arbiters sign (domain: this agreement on this chain)."""
        return typed_digest(domain_separator(chain_id, agreement), self.struct_hash())


def make_resolution(period: int, attainments: Sequence[Sequence[int]], evidence_root: bytes) -> Resolution:
    return Resolution(period, tuple(tuple(r) for r in attainments), evidence_root)


def _acceptance_hash(config_hash: bytes, vendor: str) -> bytes:
    if len(config_hash) != 32:
        raise ValueError("config_hash must be 32 bytes")
    return keccak(keccak(text=ACCEPTANCE_TYPE) + config_hash + bytes(12) + bytes.fromhex(checksum(vendor)[2:]))


def acceptance_digest(chain_id: int, agreement: str, config_hash: bytes, vendor: str) -> bytes:
    """What the customer signs for `acceptWithSignature` on an existing agreement."""
    return typed_digest(domain_separator(chain_id, agreement), _acceptance_hash(config_hash, vendor))


def factory_acceptance_digest(chain_id: int, factory: str, config_hash: bytes, vendor: str) -> bytes:
    """What the customer signs before the agreement exists, for `createAgreement(cfg, acceptance)`."""
    domain = keccak(DOMAIN_TYPEHASH + keccak(text=FACTORY_DOMAIN_NAME) + keccak(text=DOMAIN_VERSION)
                    + chain_id.to_bytes(32, "big") + bytes(12) + bytes.fromhex(checksum(factory)[2:]))
    return typed_digest(domain, _acceptance_hash(config_hash, vendor))
