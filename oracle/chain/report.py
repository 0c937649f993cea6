"""The KPI report the oracles sign: the one definition of its EIP-712 type, shared by the
signer, the submitter, verification and the Solidity tests (the contract's REPORT_TYPEHASH is
checked against `REPORT_TYPE` by a test)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.crypto import keccak

from oracle.chain.config import pack_attainments
from oracle.core.addresses import checksum
from oracle.engine.kpi import PeriodResult

DOMAIN_NAME = "slacomp Agreement"
DOMAIN_VERSION = "1"
REPORT_FIELDS: tuple[tuple[str, str], ...] = (
    ("period", "uint32"),
    ("revision", "uint32"),
    ("termsHash", "bytes32"),
    ("evidenceRoot", "bytes32"),
    ("attainments", "bytes"),
)
REPORT_TYPE = "Report(" + ",".join(f"{t} {n}" for n, t in REPORT_FIELDS) + ")"
REPORT_TYPEHASH = keccak(text=REPORT_TYPE)
DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")


@dataclass(frozen=True)
class Report:
    """Attestation of one period's attainments (bps) per objective and subject, in terms order."""

    period: int
    terms_hash: bytes
    evidence_root: bytes
    attainments: tuple[tuple[int, ...], ...]
    revision: int = 0  # a higher revision replaces a proposal still inside its challenge window

    def __post_init__(self) -> None:
        if not 0 <= self.revision < 2**32:
            raise ValueError(f"revision {self.revision} is not a uint32")
        if len(self.terms_hash) != 32 or len(self.evidence_root) != 32:
            raise ValueError("terms_hash and evidence_root must be 32 bytes")
        object.__setattr__(self, "attainments", tuple(tuple(int(b) for b in row) for row in self.attainments))

    @property
    def packed_attainments(self) -> bytes:
        return pack_attainments(self.attainments)

    def struct_hash(self) -> bytes:
        """keccak of the ABI encoding of (typehash, period, revision, termsHash, evidenceRoot,
        keccak(attainments)): static words, laid out here (eth_abi's encoder costs more than
        the hashing; tests/oracle_service check the bytes against it)."""
        if not 0 <= self.period < 2**32:
            raise ValueError(f"period {self.period} is not a uint32")
        return keccak(REPORT_TYPEHASH + self.period.to_bytes(32, "big") + self.revision.to_bytes(32, "big")
                      + self.terms_hash + self.evidence_root + keccak(self.packed_attainments))

    def digest(self, chain_id: int, agreement: str) -> bytes:
        """The EIP-712 digest the oracles sign (domain: this agreement on this chain)."""
        return typed_digest(domain_separator(chain_id, agreement), self.struct_hash())

    def typed_data(self, chain_id: int, agreement: str) -> dict[str, Any]:
        """The same message as EIP-712 JSON (for wallets and eth_account.encode_typed_data)."""
        return {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"},
                ],
                "Report": [{"name": n, "type": t} for n, t in REPORT_FIELDS],
            },
            "primaryType": "Report",
            "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id,
                       "verifyingContract": checksum(agreement)},
            "message": {"period": self.period, "revision": self.revision, "termsHash": self.terms_hash,
                        "evidenceRoot": self.evidence_root, "attainments": self.packed_attainments},
        }


_DOMAIN_HEAD = DOMAIN_TYPEHASH + keccak(text=DOMAIN_NAME) + keccak(text=DOMAIN_VERSION)


def domain_separator(chain_id: int, agreement: str) -> bytes:
    """keccak of the ABI encoding of (typehash, keccak(name), keccak(version), chainId,
    verifyingContract), laid out as static words."""
    if not 0 <= chain_id < 2**256:
        raise ValueError(f"chain id {chain_id} is not a uint256")
    return keccak(_DOMAIN_HEAD + chain_id.to_bytes(32, "big") + bytes(12) + bytes.fromhex(checksum(agreement)[2:]))


def typed_digest(domain: bytes, struct_hash: bytes) -> bytes:
    """keccak(0x1901 | domain separator | struct hash): EIP-712's final step."""
    return keccak(b"\x19\x01" + domain + struct_hash)


def _b32(v: bytes | str) -> bytes:
    return bytes.fromhex(v[2:] if v.startswith("0x") else v) if isinstance(v, str) else v


def make_report(period: int, terms_hash: bytes | str, evidence_root: bytes | str,
                attainments: Sequence[Sequence[int]], revision: int = 0) -> Report:
    return Report(period, _b32(terms_hash), _b32(evidence_root), tuple(tuple(r) for r in attainments), revision)


def report_from_result(result: PeriodResult, period_index: int) -> Report:
    """The report attesting a KPI engine result (attainments in terms order, then subjects)."""
    if result.as_of is not None:
        raise ValueError("a month-to-date (as-of) result cannot be reported")
    return make_report(period_index, result.terms_hash, result.evidence_root,
                       [[r.attainment_bps for r in o.results] for o in result.objectives])
