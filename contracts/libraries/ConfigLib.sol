// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IAgreement} from "../interfaces/IAgreement.sol";
import {SettlementLib} from "./SettlementLib.sol";

/// @title ConfigLib: reads and validates the agreement's packed Config
/// @notice Guarantees a Config that passes `validate` can be read at every offset the agreement
/// uses: counts in range, bounds ascending, tiers well-formed, no byte missing or left over.
/// @dev Layout documented in IAgreement; oracle/chain/config.py writes the same bytes. Internal
/// functions only, so they are compiled into the agreement (no external library calls).
library ConfigLib {
    uint256 internal constant BPS = 10_000;
    uint256 internal constant MAX_ORACLES = 32;

    uint8 internal constant SCOPE_ESTATE = 0;
    uint8 internal constant SCOPE_SITE = 1;
    uint8 internal constant SCOPE_DEVICE = 2;

    // ---------------------------------------------------------------- fixed head (offset, size)
    uint256 internal constant CUSTOMER_AT = 0; // address (20)
    uint256 internal constant ASSET_AT = 20; // address (20), zero = ETH
    uint256 internal constant TERMS_AT = 40; // bytes32 (32)
    uint256 internal constant FEE_AT = 72; // monthlyFee (12)
    uint256 internal constant CAP_AT = 84; // creditCapBps (2)
    uint256 internal constant THRESHOLD_AT = 86; // threshold (1): the oracle set starts here
    uint256 internal constant ORACLE_COUNT_AT = 87; // oracleCount (1)
    uint256 internal constant ORACLES_AT = 88; // oracles (20 each)

    // ---------------------------------------------------------------- sizes
    uint256 internal constant ADDRESS_SIZE = 20;
    uint256 internal constant FEE_SIZE = 12;
    uint256 internal constant BPS_SIZE = 2;
    uint256 internal constant COUNT16_SIZE = 2; // boundCount, siteCount
    uint256 internal constant BOUND_SIZE = 5;
    uint256 internal constant ORACLE_SET_HEAD = 2; // threshold (1) | count (1)

    // ---------------------------------------------------------------- inside an objective
    uint256 internal constant OBJ_SCOPE_AT = 0; // scope (1)
    uint256 internal constant OBJ_DEVICE_FEE_AT = 1; // deviceFee (12)
    uint256 internal constant OBJ_TIER_COUNT_AT = 13; // tierCount (1)
    uint256 internal constant OBJ_TIERS_AT = 14; // tiers (TIER_SIZE each)
    uint256 internal constant TIER_SIZE = 4; // belowBps (2) | creditBps (2)

    /// @dev Offsets of a Config's variable sections (computed from its counts).
    struct Layout {
        uint256 bounds; // first bound
        uint256 boundCount;
        uint256 siteFees; // first site fee
        uint256 siteCount;
        uint256 objectives; // first objective
        uint256 objectiveCount;
    }

    // ================================================================ reading

    /// @dev Big-endian unsigned integer of `size` (1..32) bytes at `off`. No bounds check: callers
    /// only read a Config whose length was validated, or fail a final length check.
    function readUint(bytes calldata b, uint256 off, uint256 size) internal pure returns (uint256 v) {
        assembly ("memory-safe") {
            v := shr(sub(256, shl(3, size)), calldataload(add(b.offset, off)))
        }
    }

    /// @dev The 20-byte address at `off`.
    function readAddress(bytes calldata b, uint256 off) internal pure returns (address) {
        return address(uint160(readUint(b, off, ADDRESS_SIZE)));
    }

    /// @dev Where the Config's oracle set ends (and its bounds section starts).
    function oraclesEnd(bytes calldata cfg) internal pure returns (uint256) {
        return ORACLES_AT + ADDRESS_SIZE * readUint(cfg, ORACLE_COUNT_AT, 1);
    }

    /// @dev The offsets of the variable sections.
    function layout(bytes calldata cfg) internal pure returns (Layout memory l) {
        uint256 off = oraclesEnd(cfg);
        l.boundCount = readUint(cfg, off, COUNT16_SIZE);
        l.bounds = off + COUNT16_SIZE;
        off = l.bounds + BOUND_SIZE * l.boundCount;
        l.siteCount = readUint(cfg, off, COUNT16_SIZE);
        l.siteFees = off + COUNT16_SIZE;
        off = l.siteFees + FEE_SIZE * l.siteCount;
        l.objectiveCount = readUint(cfg, off, 1);
        l.objectives = off + 1;
    }

    /// @dev Where the objectives end: the Config's end, or the start of its settlement section.
    function objectivesEnd(bytes calldata cfg, Layout memory l) internal pure returns (uint256 off) {
        off = l.objectives;
        for (uint256 o = 0; o < l.objectiveCount; ++o) {
            off += OBJ_TIERS_AT + TIER_SIZE * readUint(cfg, off + OBJ_TIER_COUNT_AT, 1);
        }
    }

    // ================================================================ validation

    /// @dev Validates a whole Config; returns the most a single period can cost (at most the cap)
    /// and where the objectives end: the Config's end, or the start of its settlement section.
    function validate(bytes calldata cfg, Layout memory l)
        internal
        pure
        returns (uint256 maxCredit, uint256 settlementAt)
    {
        uint256 monthlyFee = readUint(cfg, FEE_AT, FEE_SIZE);
        uint256 capBps = readUint(cfg, CAP_AT, BPS_SIZE);
        if (monthlyFee == 0) revert IAgreement.ZeroMonthlyFee();
        if (capBps > BPS) revert IAgreement.CreditCapTooHigh(capBps);
        validateOracleSet(cfg, THRESHOLD_AT);
        if (l.boundCount < 2) revert IAgreement.TooFewBounds(l.boundCount);
        for (uint256 i = 1; i < l.boundCount; ++i) {
            uint256 at = l.bounds + BOUND_SIZE * i;
            if (readUint(cfg, at, BOUND_SIZE) <= readUint(cfg, at - BOUND_SIZE, BOUND_SIZE)) {
                revert IAgreement.BoundsNotAscending(i);
            }
        }
        if (l.objectiveCount == 0) revert IAgreement.NoObjectives();
        bool unbounded;
        uint256 off = l.objectives;
        for (uint256 o = 0; o < l.objectiveCount; ++o) {
            (uint256 worst, bool open, uint256 next) = _objectiveMaxCredit(cfg, l, o, off, monthlyFee);
            maxCredit += worst;
            unbounded = unbounded || open;
            off = next;
        }
        if (off > cfg.length) revert IAgreement.ConfigLength(off, cfg.length);
        if (off != cfg.length) SettlementLib.validate(cfg, off);
        settlementAt = off;
        uint256 cap = monthlyFee * capBps / BPS;
        if (unbounded || maxCredit > cap) maxCredit = cap;
    }

    /// @dev Oracle set at `off`: threshold (1) | count (1) | oracles (20 each), 1 ≤ M ≤ N ≤ 32, ascending.
    function validateOracleSet(bytes calldata b, uint256 off) internal pure {
        uint256 threshold = readUint(b, off, 1);
        uint256 n = readUint(b, off + 1, 1);
        uint256 first = off + ORACLE_SET_HEAD;
        if (n == 0 || n > MAX_ORACLES || threshold == 0 || threshold > n || b.length < first + ADDRESS_SIZE * n) {
            revert IAgreement.InvalidOracleSet();
        }
        uint256 prev = 0;
        for (uint256 i = 0; i < n; ++i) {
            uint256 oracle = readUint(b, first + ADDRESS_SIZE * i, ADDRESS_SIZE);
            if (oracle <= prev) revert IAgreement.InvalidOracleSet(); // ascending: no zero address, no duplicates
            prev = oracle;
        }
    }

    /// @dev Validates objective `o` at `off`; returns its worst-case credit (or `unbounded` for
    /// per-device scope, whose subject count is attested per period) and where the next one starts.
    function _objectiveMaxCredit(bytes calldata cfg, Layout memory l, uint256 o, uint256 off, uint256 monthlyFee)
        private
        pure
        returns (uint256 worst, bool unbounded, uint256 next)
    {
        uint256 scope = readUint(cfg, off + OBJ_SCOPE_AT, 1);
        uint256 rate;
        {
            uint256 nTiers = readUint(cfg, off + OBJ_TIER_COUNT_AT, 1);
            rate = _validateTiers(cfg, o, off + OBJ_TIERS_AT, nTiers);
            next = off + OBJ_TIERS_AT + TIER_SIZE * nTiers;
        }
        if (scope == SCOPE_ESTATE) {
            worst = monthlyFee * rate / BPS;
        } else if (scope == SCOPE_SITE) {
            if (l.siteCount == 0) revert IAgreement.NoSites(o);
            for (uint256 s = 0; s < l.siteCount; ++s) {
                worst += readUint(cfg, l.siteFees + FEE_SIZE * s, FEE_SIZE) * rate / BPS;
            }
        } else if (scope == SCOPE_DEVICE) {
            unbounded = true;
        } else {
            revert IAgreement.UnknownScope(o, scope);
        }
    }

    /// @dev Tiers of objective `o`: belowBps in 1..BPS strictly descending, creditBps ≤ BPS
    /// non-decreasing; returns the last (highest) rate.
    function _validateTiers(bytes calldata cfg, uint256 o, uint256 off, uint256 n) private pure returns (uint256 rate) {
        if (n == 0) revert IAgreement.NoTiers(o);
        uint256 prevBelow = BPS + 1;
        for (uint256 t = 0; t < n; ++t) {
            uint256 below = readUint(cfg, off + TIER_SIZE * t, BPS_SIZE);
            uint256 next = readUint(cfg, off + TIER_SIZE * t + BPS_SIZE, BPS_SIZE);
            if (below == 0 || below >= prevBelow || next > BPS || next < rate) revert IAgreement.InvalidTier(o, t);
            (prevBelow, rate) = (below, next);
        }
    }
}
