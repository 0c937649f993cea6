"""Oracle signatures over reports, in the wire format `Agreement.submitReport` takes:
66-byte entries (oracle index, r, s, v), strictly ascending by oracle index."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import rlp
from coincurve import PrivateKey, PublicKey
from eth_account import Account
from eth_utils.crypto import keccak

from oracle.chain.config import Config
from oracle.chain.messages import Resolution, acceptance_digest, factory_acceptance_digest
from oracle.chain.report import Report
from oracle.core.addresses import checksum

SIG_ENTRY = 66
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def sign_digest(digest: bytes, private_key: bytes | str) -> bytes:
    """A 65-byte (r, s, v) secp256k1 signature with low s and v in {27, 28}."""
    key = bytes.fromhex(private_key.removeprefix("0x")) if isinstance(private_key, str) else private_key
    return Signer(key).sign_digest(digest)


class Signer:
    """One private key held for repeated signing straight through libsecp256k1 (coincurve): the
    same RFC 6979 signatures as eth-account, without its per-call key parsing and formatting
    (several times the signing itself)."""

    def __init__(self, private_key: bytes) -> None:
        self._key = PrivateKey(bytes(private_key))
        self.address = _address_of(self._key.public_key)

    def __getstate__(self) -> Any:  # keep keys out of pickles
        raise TypeError("Signer cannot be serialised")

    def _sign(self, digest: bytes) -> tuple[int, int, int]:
        sig = self._key.sign_recoverable(digest, hasher=None)  # r || s || recovery id; s is low
        return int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]

    def sign_digest(self, digest: bytes) -> bytes:
        """As `sign_digest`: 65 bytes (r, s, v), low s, v in {27, 28}."""
        r, s, y = self._sign(digest)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + y])

    def sign_eip1559(self, chain_id: int, nonce: int, gas: int, max_fee: int, tip: int, to: str,
                     value: int, data: bytes) -> tuple[bytes, bytes]:
        """A signed type-2 (EIP-1559) transaction with an empty access list: (raw bytes, hash),
        byte for byte what eth-account's sign_transaction gives."""
        fields = [chain_id, nonce, tip, max_fee, gas, bytes.fromhex(to.removeprefix("0x")), value, data, []]
        r, s, y = self._sign(keccak(b"\x02" + rlp.encode(fields)))
        raw = b"\x02" + rlp.encode(fields + [y, r, s])
        return raw, keccak(raw)


def recover_signer(digest: bytes, signature: bytes) -> str | None:
    """The checksummed address a 65-byte (r, s, v) signature over `digest` recovers to, v in
    {27, 28}; None if it is malformed (high s included) or recovers to nothing."""
    if len(signature) != 65 or signature[64] not in (27, 28):
        return None
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    if not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_N // 2):
        return None
    try:
        key = PublicKey.from_signature_and_message(signature[:64] + bytes([signature[64] - 27]), digest, hasher=None)
    except Exception:  # noqa: BLE001 - no point on the curve for this r
        return None
    return _address_of(key)


def _address_of(key: PublicKey) -> str:
    return checksum("0x" + keccak(key.format(compressed=False)[1:])[-20:].hex())


def sign_report(report: Report, chain_id: int, agreement: str, private_key: bytes | str) -> bytes:
    return sign_digest(report.digest(chain_id, agreement), private_key)


def pack_signatures(by_index: Mapping[int, bytes] | Iterable[tuple[int, bytes]]) -> bytes:
    items = sorted(dict(by_index).items())
    out = bytearray()
    for index, sig in items:
        if len(sig) != 65:
            raise ValueError(f"signature for oracle {index} is {len(sig)} bytes, expected 65")
        out += bytes([index]) + sig
    return bytes(out)


def sign_for(report: Report, config: Config, chain_id: int, agreement: str,
             private_keys: Iterable[bytes | str]) -> bytes:
    """Sign with each key (each must belong to an oracle of `config`) and pack the signatures."""
    entries = {}
    for key in private_keys:
        index = config.oracle_index(Account.from_key(key).address)
        entries[index] = sign_report(report, chain_id, agreement, key)
    return pack_signatures(entries)


def sign_resolution_for(resolution: Resolution, config: Config, chain_id: int, agreement: str,
                        private_keys: Iterable[bytes | str]) -> bytes:
    """Sign a resolution with each arbiter key (each must be an arbiter of `config`) and pack them."""
    arbiters = config.settlement_or_default.arbiters
    digest = resolution.digest(chain_id, agreement)
    entries = {}
    for key in private_keys:
        address = checksum(Account.from_key(key).address)
        if address not in arbiters:
            raise ValueError(f"{address} is not an arbiter of the agreement")
        entries[arbiters.index(address)] = sign_digest(digest, key)
    return pack_signatures(entries)


def sign_acceptance(config: Config, vendor: str, chain_id: int, private_key: bytes | str, *,
                    agreement: str | None = None, factory: str | None = None) -> bytes:
    """The customer's 65-byte acceptance of `config` with `vendor`: for `acceptWithSignature` on
    `agreement`, or (before it exists) for the factory's `createAgreement(cfg, acceptance)`."""
    if (agreement is None) == (factory is None):
        raise ValueError("give exactly one of agreement= or factory=")
    if agreement is not None:
        digest = acceptance_digest(chain_id, agreement, config.hash(), vendor)
    else:
        digest = factory_acceptance_digest(chain_id, str(factory), config.hash(), vendor)
    return sign_digest(digest, private_key)


def unpack_signatures(data: bytes) -> list[tuple[int, bytes]]:
    if len(data) % SIG_ENTRY:
        raise ValueError(f"signature blob length {len(data)} is not a multiple of {SIG_ENTRY}")
    return [(data[i], data[i + 1:i + SIG_ENTRY]) for i in range(0, len(data), SIG_ENTRY)]
