"""Ethereum addresses in their EIP-55 checksummed form, cached: the node normalises the same
few addresses (its agreements, oracles, keys) thousands of times a pass, and each checksum
costs a keccak."""
from __future__ import annotations

from functools import lru_cache

from eth_utils.address import to_checksum_address


@lru_cache(maxsize=65536)
def checksum(address: str | bytes) -> str:
    """`eth_utils.to_checksum_address`, cached (raises the same errors for bad input)."""
    return to_checksum_address(address)
