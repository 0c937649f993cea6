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
    event AgreementCreated(
        address indexed vendor, address indexed customer, address indexed agreement, bytes32 termsHash
    );

    constructor() {
        implementation = address(new Agreement());
    }

    /// @notice Deploy and set up an agreement; the caller is its vendor.
    /// @param cfg the packed Config (layout in IAgreement): customer, asset, terms hash, credit
    /// schedule, period bounds and oracle set
    /// @return agreement the new agreement's address
    function createAgreement(bytes calldata cfg) external returns (address agreement) {
        agreement = Clones.clone(implementation);
        Agreement a = Agreement(payable(agreement));
        a.initialize(msg.sender, cfg);
        emit AgreementCreated(msg.sender, a.customer(), agreement, a.termsHash());
    }
}
