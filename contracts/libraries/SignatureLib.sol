// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IAgreement} from "../interfaces/IAgreement.sol";
import {ConfigLib} from "./ConfigLib.sol";

/// @title SignatureLib: M-of-N oracle signatures over a report digest
/// @notice Guarantees a digest passes only with at least `threshold` valid low-s signatures, each by
/// a distinct oracle of the Config's set (indexes strictly ascending, so no oracle counts twice).
/// @dev `signatures` is a concatenation of 66-byte entries: oracle index (1) | r (32) | s (32) | v (1),
/// as oracle/chain/signing.py packs them.
library SignatureLib {
    using ConfigLib for bytes;

    uint256 internal constant SIG_LENGTH = 66;
    uint256 internal constant R_AT = 1;
    uint256 internal constant S_AT = 33;
    uint256 internal constant V_AT = 65;
    /// @dev secp256k1 order / 2: a larger s is the malleable twin of a valid signature.
    uint256 internal constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @dev Reverts unless `signatures` holds at least `threshold` entries, each a valid low-s
    /// signature of `digest` by the oracle at its index in `cfg`, indexes strictly ascending.
    function verify(bytes32 digest, bytes calldata signatures, bytes calldata cfg) internal pure {
        verifySet(digest, signatures, cfg, ConfigLib.THRESHOLD_AT);
    }

    /// @dev As `verify`, for the signer set at `setAt` in `cfg`: threshold (1) | count (1) |
    /// signers (20 each). The oracle set is at THRESHOLD_AT, the arbiter set in the settlement section.
    function verifySet(bytes32 digest, bytes calldata signatures, bytes calldata cfg, uint256 setAt) internal pure {
        uint256 len = signatures.length;
        if (len == 0 || len % SIG_LENGTH != 0) revert IAgreement.MalformedSignatures(len);
        uint256 n = len / SIG_LENGTH;
        uint256 threshold = cfg.readUint(setAt, 1);
        if (n < threshold) revert IAgreement.InsufficientSignatures(n, threshold);
        uint256 count = cfg.readUint(setAt + 1, 1);
        uint256 first = setAt + ConfigLib.ORACLE_SET_HEAD;
        uint256 prevIndex;
        for (uint256 i = 0; i < n; ++i) {
            (uint256 index, address signer) = _recoverAt(digest, signatures, i);
            if ((i != 0 && index <= prevIndex) || index >= count) revert IAgreement.SignatureOrder(i);
            address expected = cfg.readAddress(first + ConfigLib.ADDRESS_SIZE * index);
            if (signer != expected) revert IAgreement.NotAnOracle(i, signer);
            prevIndex = index;
        }
    }

    /// @dev Oracle index and recovered signer of the i-th entry.
    function _recoverAt(bytes32 digest, bytes calldata signatures, uint256 i)
        private
        pure
        returns (uint256 index, address signer)
    {
        bytes32 r;
        bytes32 s;
        uint8 v;
        uint256 at = i * SIG_LENGTH;
        assembly ("memory-safe") {
            let p := add(signatures.offset, at)
            index := byte(0, calldataload(p))
            r := calldataload(add(p, R_AT))
            s := calldataload(add(p, S_AT))
            v := byte(0, calldataload(add(p, V_AT)))
        }
        if (uint256(s) > HALF_N) revert IAgreement.HighSSignature(i);
        signer = ecrecover(digest, v, r, s); // zero for a bad v or a point off the curve
        if (signer == address(0)) revert IAgreement.InvalidSignature(i);
    }
}
