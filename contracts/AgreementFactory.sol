// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {Agreement} from "./Agreement.sol";

/// @title AgreementFactory: deploys one Agreement clone per customer
/// @notice Guarantees every agreement it created is an EIP-1167 clone of `implementation`, set up in
/// the same transaction by its vendor (the caller). Agreements are discoverable from
/// `AgreementCreated` logs, filtered by vendor or customer; no on-chain list is kept.
contract AgreementFactory {
    /// @notice The Agreement implementation every clone delegates to.
    address public immutable implementation;

    /// @notice A new agreement between `vendor` (the caller) and `customer`.
    /// @param vendor the caller, who escrows credits
    /// @param customer the Config's customer
    /// @param agreement the new clone
    /// @param termsHash the agreed terms' hash
    event AgreementCreated(
        address indexed vendor, address indexed customer, address indexed agreement, bytes32 termsHash
    );
    /// @notice `finalizeMany` skipped `agreement`'s `period` (not proposed, window open, or it reverted).
    /// @param agreement the agreement skipped
    /// @param period the period skipped
    event FinalizeSkipped(address indexed agreement, uint256 period);

    /// @notice `finalizeMany` was given arrays of different lengths.
    /// @param agreements the number of agreements
    /// @param periods the number of periods
    error LengthMismatch(uint256 agreements, uint256 periods);

    constructor() {
        implementation = address(new Agreement());
    }

    /// @notice Deploy and set up an agreement; the caller is its vendor. The customer still has to
    /// `accept()` (or `acceptWithSignature`) before any period settles.
    /// @param cfg the packed Config (layout in IAgreement): customer, asset, terms hash, credit
    /// schedule, period bounds, oracle set and optional settlement section
    /// @return agreement the new agreement's address
    function createAgreement(bytes calldata cfg) external returns (address agreement) {
        agreement = Clones.clone(implementation);
        _setUp(agreement, cfg, "");
    }

    /// @notice Deploy an agreement the customer accepted already: `acceptance` is the customer's
    /// EIP-712 signature of Acceptance(keccak256(cfg), caller) under this factory's domain
    /// ("slacomp AgreementFactory", "1"). The clone's address is derived from that pair, so one
    /// acceptance creates at most one agreement.
    /// @param cfg the packed Config
    /// @param acceptance the customer's 65-byte signature
    /// @return agreement the new agreement's address
    function createAgreement(bytes calldata cfg, bytes calldata acceptance) external returns (address agreement) {
        agreement = Clones.cloneDeterministic(implementation, keccak256(abi.encode(keccak256(cfg), msg.sender)));
        _setUp(agreement, cfg, acceptance);
    }

    /// @notice Finalise many proposals whose challenge windows passed (e.g. a keeper's monthly run).
    /// @dev Skip semantics: an entry that cannot be finalised (not proposed, window open, disputed,
    /// or its payout reverted) is skipped with `FinalizeSkipped`; the others go through. Bounded by
    /// the calldata the caller pays for.
    /// @param agreements the agreements
    /// @param periods the period of each agreement to finalise
    /// @return done how many were finalised
    function finalizeMany(address[] calldata agreements, uint32[] calldata periods) external returns (uint256 done) {
        if (agreements.length != periods.length) revert LengthMismatch(agreements.length, periods.length);
        for (uint256 i = 0; i < agreements.length; ++i) {
            try Agreement(payable(agreements[i])).finalize(periods[i]) {
                ++done;
            } catch {
                emit FinalizeSkipped(agreements[i], periods[i]);
            }
        }
    }

    function _setUp(address agreement, bytes calldata cfg, bytes memory acceptance) private {
        Agreement a = Agreement(payable(agreement));
        a.initialize(msg.sender, cfg, acceptance);
        emit AgreementCreated(msg.sender, a.customer(), agreement, a.termsHash());
    }
}
