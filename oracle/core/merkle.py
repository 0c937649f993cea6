"""keccak256 Merkle trees compatible with OpenZeppelin's `MerkleProof.verify`: leaves are
double-hashed (``keccak256(keccak256(data))``), inner nodes hash the sorted pair, and a node
without a sibling moves up a level unchanged. The root of no leaves is 32 zero bytes."""
from __future__ import annotations

from collections.abc import Sequence

from eth_utils.crypto import keccak

ZERO = b"\x00" * 32


def leaf_hash(data: bytes) -> bytes:
    return keccak(keccak(data))


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a <= b else keccak(b + a)


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        cur = levels[-1]
        nxt = [hash_pair(cur[i], cur[i + 1]) for i in range(0, len(cur) - 1, 2)]
        if len(cur) % 2:
            nxt.append(cur[-1])
        levels.append(nxt)
    return levels


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Root over leaf hashes in the given order."""
    if not leaves:
        return ZERO
    return _levels(leaves)[-1][0]


def merkle_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Sibling hashes from leaf `index` up to the root."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is not in a tree of {len(leaves)} leaves")
    proof = []
    for level in _levels(leaves)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        index //= 2
    return proof


def verify_proof(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """True iff `leaf` (a leaf hash) is in the tree with `root`; as MerkleProof.verify."""
    h = leaf
    for p in proof:
        h = hash_pair(h, p)
    return h == root
