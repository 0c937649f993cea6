// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IAgreement} from "../interfaces/IAgreement.sol";
import {ConfigLib} from "./ConfigLib.sol";

/// @title SettlementLib: the optional settlement section of the Config (windows, arbiters, auditors)
/// @notice Guarantees a Config either ends after its objectives (the defaults: no challenge window,
/// 30-day report deadline, 14-day arbitration window, default credit = the period's maximum) or
/// carries one well-formed settlement section, and that no party signs for the other unless allowed.
/// @dev Section layout (offsets from its start `s`, documented in IAgreement):
///   challengeWindow (4) | reportDeadline (4) | arbitrationWindow (4) | flags (1) | disputeBond (12)
///   | arbiterThreshold (1) | arbiterCount (1) | arbiters (20 each, ascending)
///   | auditorCount (1) | auditors (20 each, ascending)
library SettlementLib {
    using ConfigLib for bytes;

    uint256 internal constant DEFAULT_DEADLINE = 30 days;
    uint256 internal constant DEFAULT_ARBITRATION = 14 days;

    uint256 internal constant WINDOW_AT = 0;
    uint256 internal constant DEADLINE_AT = 4;
    uint256 internal constant ARBITRATION_AT = 8;
    uint256 internal constant FLAGS_AT = 12;
    uint256 internal constant BOND_AT = 13;
    uint256 internal constant ARBITERS_AT = 25; // the arbiter set: threshold (1) | count (1) | arbiters
    uint256 internal constant DURATION_SIZE = 4;
    uint256 internal constant BOND_SIZE = 12;

    /// @dev flags bit 0: the default credit is the period's maximum (else zero).
    uint256 internal constant FLAG_DEFAULT_MAX = 1;
    /// @dev flags bit 1: the vendor or the customer may be an oracle or an arbiter.
    uint256 internal constant FLAG_PARTY_SIGNERS = 2;

    /// @dev The settlement parameters; `arbiters` and `auditors` are offsets in the Config (or
    /// zero when the section is absent).
    struct Params {
        uint256 window;
        uint256 deadline;
        uint256 arbitration;
        uint256 flags;
        uint256 bond;
        uint256 arbiters;
        uint256 auditors;
    }

    /// @dev The challenge window and report deadline only: what every report reads.
    function windows(bytes calldata cfg, uint256 s) internal pure returns (uint256 window, uint256 deadline) {
        if (s == cfg.length) return (0, DEFAULT_DEADLINE);
        window = cfg.readUint(s + WINDOW_AT, DURATION_SIZE);
        deadline = cfg.readUint(s + DEADLINE_AT, DURATION_SIZE);
    }

    /// @dev All parameters of the section at `s` (the end of the objectives).
    function params(bytes calldata cfg, uint256 s) internal pure returns (Params memory p) {
        if (s == cfg.length) {
            p.deadline = DEFAULT_DEADLINE;
            p.arbitration = DEFAULT_ARBITRATION;
            p.flags = FLAG_DEFAULT_MAX;
            return p;
        }
        p.window = cfg.readUint(s + WINDOW_AT, DURATION_SIZE);
        p.deadline = cfg.readUint(s + DEADLINE_AT, DURATION_SIZE);
        p.arbitration = cfg.readUint(s + ARBITRATION_AT, DURATION_SIZE);
        p.flags = cfg.readUint(s + FLAGS_AT, 1);
        p.bond = cfg.readUint(s + BOND_AT, BOND_SIZE);
        p.arbiters = s + ARBITERS_AT;
        p.auditors = p.arbiters + ConfigLib.ORACLE_SET_HEAD + ConfigLib.ADDRESS_SIZE * cfg.readUint(p.arbiters + 1, 1);
    }

    /// @dev Validates the section at `s` (called only when the Config goes on past its objectives).
    function validate(bytes calldata cfg, uint256 s) internal pure {
        if (cfg.length < s + ARBITERS_AT + ConfigLib.ORACLE_SET_HEAD + 1) revert IAgreement.InvalidSettlement(s);
        Params memory p = params(cfg, s);
        if (p.deadline == 0 || p.arbitration == 0 || p.flags > (FLAG_DEFAULT_MAX | FLAG_PARTY_SIGNERS)) {
            revert IAgreement.InvalidSettlement(s);
        }
        uint256 threshold = cfg.readUint(p.arbiters, 1);
        uint256 n = cfg.readUint(p.arbiters + 1, 1);
        if (n > ConfigLib.MAX_ORACLES || threshold > n || (n != 0 && threshold == 0) || (p.window != 0 && n == 0)) {
            revert IAgreement.InvalidThreshold(threshold, n);
        }
        if (cfg.length < p.auditors + 1) revert IAgreement.InvalidSettlement(s);
        uint256 auditors = cfg.readUint(p.auditors, 1);
        uint256 end = p.auditors + 1 + ConfigLib.ADDRESS_SIZE * auditors;
        if (auditors > ConfigLib.MAX_ORACLES || end != cfg.length) revert IAgreement.ConfigLength(end, cfg.length);
        _ascending(cfg, p.arbiters + ConfigLib.ORACLE_SET_HEAD, n);
        _ascending(cfg, p.auditors + 1, auditors);
    }

    /// @dev Parties and signers are apart: customer != vendor; unless the party-signers flag is set,
    /// neither party is an oracle or an arbiter; no arbiter is an oracle. Lists are bounded (≤ 32).
    function checkSigners(bytes calldata cfg, uint256 s, address vendor, address customer) internal pure {
        if (customer == vendor) revert IAgreement.CustomerIsVendor(customer);
        Params memory p = params(cfg, s);
        uint256 oracles = cfg.readUint(ConfigLib.ORACLE_COUNT_AT, 1);
        uint256 arbiters = p.arbiters == 0 ? 0 : cfg.readUint(p.arbiters + 1, 1);
        uint256 firstArbiter = p.arbiters + ConfigLib.ORACLE_SET_HEAD;
        if (p.flags & FLAG_PARTY_SIGNERS == 0) {
            _notIn(cfg, ConfigLib.ORACLES_AT, oracles, vendor);
            _notIn(cfg, ConfigLib.ORACLES_AT, oracles, customer);
            _notIn(cfg, firstArbiter, arbiters, vendor);
            _notIn(cfg, firstArbiter, arbiters, customer);
        }
        for (uint256 i = 0; i < arbiters; ++i) {
            address arbiter = cfg.readAddress(firstArbiter + ConfigLib.ADDRESS_SIZE * i);
            for (uint256 j = 0; j < oracles; ++j) {
                if (cfg.readAddress(ConfigLib.ORACLES_AT + ConfigLib.ADDRESS_SIZE * j) == arbiter) {
                    revert IAgreement.ArbiterIsOracle(arbiter);
                }
            }
        }
    }

    /// @dev Is `who` one of the `count` addresses at `off`?
    function contains(bytes calldata cfg, uint256 off, uint256 count, address who) internal pure returns (bool) {
        for (uint256 i = 0; i < count; ++i) {
            if (cfg.readAddress(off + ConfigLib.ADDRESS_SIZE * i) == who) return true;
        }
        return false;
    }

    function _notIn(bytes calldata cfg, uint256 off, uint256 count, address party) private pure {
        if (contains(cfg, off, count, party)) revert IAgreement.PartyIsSigner(party);
    }

    /// @dev `n` addresses at `off`, strictly ascending (so no zero address and no duplicate).
    function _ascending(bytes calldata cfg, uint256 off, uint256 n) private pure {
        uint256 prev = 0;
        for (uint256 i = 0; i < n; ++i) {
            uint256 a = cfg.readUint(off + ConfigLib.ADDRESS_SIZE * i, ConfigLib.ADDRESS_SIZE);
            if (a <= prev) revert IAgreement.InvalidSettlement(off + ConfigLib.ADDRESS_SIZE * i);
            prev = a;
        }
    }
}
