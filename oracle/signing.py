"""Oracle signatures over reports, in the wire format `Agreement.submitReport` takes:
66-byte entries (oracle index, r, s, v), strictly ascending by oracle index."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from eth_account import Account

from .report import Report
from .schedule import Config

SIG_ENTRY = 66


def sign_digest(digest: bytes, private_key: bytes | str) -> bytes:
    """A 65-byte (r, s, v) secp256k1 signature with low s and v in {27, 28}."""
    signed = Account.unsafe_sign_hash(digest, private_key)
    return signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v])


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


def unpack_signatures(data: bytes) -> list[tuple[int, bytes]]:
    if len(data) % SIG_ENTRY:
        raise ValueError(f"signature blob length {len(data)} is not a multiple of {SIG_ENTRY}")
    return [(data[i], data[i + 1:i + SIG_ENTRY]) for i in range(0, len(data), SIG_ENTRY)]
