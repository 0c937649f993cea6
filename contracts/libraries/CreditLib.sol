// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IAgreement} from "../interfaces/IAgreement.sol";
import {ConfigLib} from "./ConfigLib.sol";

/// @title CreditLib: the credit a period's attainments earn under the agreed schedule
/// @notice Guarantees the credit is the schedule's, never the oracle's: per subject
/// floor(fee * rate / BPS) of the most severe tier it falls below, summed, capped at the Config's cap.
/// @dev Mirrors oracle/core/credit.py (tests/contracts/test_python_parity.py compares both on
/// random inputs). Reads a Config already checked against the agreement's hash or validated.
library CreditLib {
    using ConfigLib for bytes;

    /// @dev Attainments: per objective, uint16 subject count, then that many uint16 attainments (bps).
    uint256 internal constant SUBJECTS_SIZE = 2;
    uint256 internal constant ATTAINMENT_SIZE = 2;

    /// @dev The capped credit for `att` (packed attainments) under `cfg`, and where the Config's
    /// objectives end (its settlement section, if any, starts there).
    function creditFor(bytes calldata cfg, ConfigLib.Layout memory l, bytes calldata att)
        internal
        pure
        returns (uint256 total, uint256 obj)
    {
        uint256 off = 0; // in att
        obj = l.objectives; // in cfg
        for (uint256 o = 0; o < l.objectiveCount; ++o) {
            uint256 credit;
            (credit, off) = _objectiveCredit(cfg, l, obj, att, off);
            total += credit;
            obj += ConfigLib.OBJ_TIERS_AT + ConfigLib.TIER_SIZE * cfg.readUint(obj + ConfigLib.OBJ_TIER_COUNT_AT, 1);
        }
        if (off != att.length) revert IAgreement.MalformedAttainments(off);
        uint256 cap = cfg.readUint(ConfigLib.FEE_AT, ConfigLib.FEE_SIZE) * cfg.readUint(ConfigLib.CAP_AT, ConfigLib.BPS_SIZE)
            / ConfigLib.BPS;
        if (total > cap) total = cap;
    }

    /// @dev Credit of the objective at `obj` (in cfg) whose attainments start at `off` (in att);
    /// returns where they end.
    function _objectiveCredit(
        bytes calldata cfg,
        ConfigLib.Layout memory l,
        uint256 obj,
        bytes calldata att,
        uint256 off
    ) private pure returns (uint256 credit, uint256 end) {
        if (off + SUBJECTS_SIZE > att.length) revert IAgreement.MalformedAttainments(off);
        uint256 subjects = att.readUint(off, SUBJECTS_SIZE);
        uint256 first = off + SUBJECTS_SIZE;
        end = first + ATTAINMENT_SIZE * subjects;
        if (end > att.length) revert IAgreement.MalformedAttainments(off);
        uint256 scope = cfg.readUint(obj + ConfigLib.OBJ_SCOPE_AT, 1);
        if (scope == ConfigLib.SCOPE_ESTATE ? subjects != 1 : scope == ConfigLib.SCOPE_SITE && subjects != l.siteCount) {
            revert IAgreement.MalformedAttainments(off);
        }
        for (uint256 s = 0; s < subjects; ++s) {
            uint256 at = first + ATTAINMENT_SIZE * s;
            uint256 bps = att.readUint(at, ATTAINMENT_SIZE);
            if (bps > ConfigLib.BPS) revert IAgreement.AttainmentOutOfRange(at, bps);
            credit += _subjectCredit(cfg, l, obj, s, bps);
        }
    }

    /// @dev floor(fee * rate / BPS) for subject `s` of the objective at `obj` with attainment `bps`.
    /// The fee is the monthly fee (estate), the site's fee (per site) or the device fee (per device).
    function _subjectCredit(bytes calldata cfg, ConfigLib.Layout memory l, uint256 obj, uint256 s, uint256 bps)
        private
        pure
        returns (uint256)
    {
        uint256 n = cfg.readUint(obj + ConfigLib.OBJ_TIER_COUNT_AT, 1);
        uint256 rate = _tierRate(cfg, obj + ConfigLib.OBJ_TIERS_AT, n, bps);
        if (rate == 0) return 0;
        uint256 scope = cfg.readUint(obj + ConfigLib.OBJ_SCOPE_AT, 1);
        uint256 feeAt = scope == ConfigLib.SCOPE_ESTATE
            ? ConfigLib.FEE_AT
            : (scope == ConfigLib.SCOPE_SITE
                    ? l.siteFees + ConfigLib.FEE_SIZE * s
                    : obj + ConfigLib.OBJ_DEVICE_FEE_AT);
        return cfg.readUint(feeAt, ConfigLib.FEE_SIZE) * rate / ConfigLib.BPS;
    }

    /// @dev Rate of the most severe tier whose belowBps is above `bps` (tiers: belowBps descending).
    function _tierRate(bytes calldata cfg, uint256 off, uint256 n, uint256 bps) private pure returns (uint256 rate) {
        for (uint256 t = 0; t < n; ++t) {
            uint256 packed = cfg.readUint(off + ConfigLib.TIER_SIZE * t, ConfigLib.TIER_SIZE);
            if (bps >= packed >> 16) break; // belowBps: the high 16 bits
            rate = packed & 0xffff; // creditBps: the low 16 bits
        }
    }
}
