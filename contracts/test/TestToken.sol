// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestToken: a USDC-like test token (6 decimals) with a blocklist and optional transfer fee
/// @notice For tests and demos only: anyone can mint. `setBlocked` makes transfers to or from an
/// address revert (like a regulated stablecoin); `setFeeBps` takes a fee on every transfer.
contract TestToken is ERC20 {
    uint8 private immutable _decimals;
    uint256 public feeBps;
    mapping(address => bool) public blocked;

    error Blocked(address account);

    event BlockedSet(address indexed account, bool blocked);
    event FeeSet(uint256 feeBps);

    constructor(string memory name_, string memory symbol_, uint8 decimals_) ERC20(name_, symbol_) {
        _decimals = decimals_;
    }

    /// @notice Token decimals (6 for the USDC-like default).
    /// @return the number of decimals
    function decimals() public view override returns (uint8) {
        return _decimals;
    }

    /// @notice Mint test tokens to anyone.
    /// @param to recipient
    /// @param amount amount in smallest units
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Block or unblock an account.
    /// @param account the account
    /// @param isBlocked whether transfers to/from it revert
    function setBlocked(address account, bool isBlocked) external {
        blocked[account] = isBlocked;
        emit BlockedSet(account, isBlocked);
    }

    /// @notice Set a fee (burned) taken from every transfer.
    /// @param bps fee in basis points of the amount
    function setFeeBps(uint256 bps) external {
        feeBps = bps;
        emit FeeSet(bps);
    }

    function _update(address from, address to, uint256 value) internal override {
        if (blocked[from]) revert Blocked(from);
        if (blocked[to]) revert Blocked(to);
        uint256 fee = (from == address(0) || to == address(0)) ? 0 : value * feeBps / 10_000;
        if (fee != 0) super._update(from, address(0), fee);
        super._update(from, to, value - fee);
    }
}
