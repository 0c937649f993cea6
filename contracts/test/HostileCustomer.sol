// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title HostileCustomer: a customer contract that reverts on, or re-enters from, ETH receipt
/// @notice Test helper. Mode 0 accepts ETH; 1 reverts; 2 re-enters the agreement with `payload`
/// and records the outcome (then accepts the ETH); 3 burns all gas it is given.
contract HostileCustomer {
    uint8 public mode;
    address public target;
    bytes public payload;
    bool public reentered;
    bytes public reentryError;

    event Received(uint256 amount);

    /// @notice Configure the behaviour on ETH receipt.
    /// @param mode_ 0 accept, 1 revert, 2 re-enter, 3 burn gas
    /// @param target_ contract to re-enter
    /// @param payload_ calldata for the re-entry
    function setMode(uint8 mode_, address target_, bytes calldata payload_) external {
        mode = mode_;
        target = target_;
        payload = payload_;
    }

    /// @notice Call anything as this contract (to claim, propose, accept).
    /// @param to the contract to call
    /// @param data the calldata
    /// @return the return data
    function exec(address to, bytes calldata data) external returns (bytes memory) {
        (bool ok, bytes memory ret) = to.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    receive() external payable {
        if (mode == 1) revert("no thanks");
        if (mode == 2) {
            (bool ok, bytes memory ret) = target.call(payload);
            reentered = ok;
            reentryError = ret;
        }
        if (mode == 3) {
            while (true) {}
        }
        emit Received(msg.value);
    }
}
