// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title The slacomp SLA agreement: types, errors and events
/// @notice One agreement per vendor/customer pair. The vendor escrows credits; oracles attest
/// monthly KPI attainments; the agreement computes the credit from its schedule and pays it.
interface IAgreement {
    // The agreement's Config is one packed byte string (big-endian, no padding); only its keccak256
    // (`configHash`) is stored, and calls that need it pass it back in calldata. Layout:
    //   customer (20) | asset (20, zero = ETH) | termsHash (32) | monthlyFee (12) | creditCapBps (2)
    //   | threshold (1) | oracleCount (1) | oracles (20 each, strictly ascending)
    //   | boundCount (2) | bounds (5 each, unix seconds; period i = [bounds[i], bounds[i+1]))
    //   | siteCount (2) | siteFees (12 each)
    //   | objectiveCount (1) | per objective: scope (1: 0 estate, 1 per site, 2 per device)
    //     | deviceFee (12) | tierCount (1) | tiers (4 each: belowBps (2) | creditBps (2);
    //     belowBps strictly descending, creditBps non-decreasing)
    // oracle/schedule.py's Config.encoded() writes exactly this; tests prove both agree.

    // ---------------------------------------------------------------- errors
    error AlreadyInitialized();
    error ZeroAddress();
    error ZeroAmount();
    error NotVendor(address caller);
    error NotCustomer(address caller);
    error NotParty(address caller);
    error Reentrancy();
    error ConfigMismatch(bytes32 expected, bytes32 given);
    error InvalidConfig(uint256 code);
    error ConfigLength(uint256 expected, uint256 given);
    error InvalidOracleSet();
    error TermsHashMismatch(bytes32 expected, bytes32 given);
    error PeriodAlreadySettled(uint256 period);
    error PeriodOutOfOrder(uint256 period, uint256 next);
    error PeriodNotEnded(uint256 period, uint256 endsAt);
    error NoSuchPeriod(uint256 period);
    error MalformedAttainments(uint256 offset);
    error AttainmentOutOfRange(uint256 offset, uint256 bps);
    error MalformedSignatures(uint256 length);
    error InsufficientSignatures(uint256 given, uint256 threshold);
    error SignatureOrder(uint256 index);
    error HighSSignature(uint256 index);
    error InvalidSignature(uint256 index);
    error NotAnOracle(uint256 index, address signer);
    error DepositMismatch(uint256 declared, uint256 sent);
    error ExceedsWithdrawable(uint256 requested, uint256 withdrawable);
    error TransferFailed(address to, uint256 amount);
    error NothingToClaim();
    error NoPendingOracleSet();
    error OracleSetMismatch(bytes32 expected, bytes32 given);
    error ProposerCannotAccept(address proposer);

    // ---------------------------------------------------------------- events
    /// @notice The agreement was set up; `config` is the full schedule whose hash is `configHash`.
    event AgreementConfigured(
        address indexed vendor,
        address indexed customer,
        address asset,
        bytes32 termsHash,
        bytes32 configHash,
        uint256 maxCreditPerPeriod,
        bytes config
    );
    /// @notice A report for `period` was accepted with `credit` owed to the customer.
    event ReportAccepted(
        uint256 indexed period,
        bytes32 termsHash,
        bytes32 evidenceRoot,
        bytes attainments,
        bytes signatures,
        uint256 credit
    );
    /// @notice `amount` was transferred to the customer (`period` = type(uint256).max for debt repayment).
    event CreditPaid(uint256 indexed period, address indexed customer, uint256 amount);
    /// @notice The push to the customer failed; `amount` became claimable.
    event CreditDeferred(uint256 indexed period, address indexed customer, uint256 amount);
    /// @notice Escrow was short: `amount` of the period's credit is owed as debt.
    event DebtRecorded(uint256 indexed period, uint256 amount, uint256 totalDebt);
    /// @notice `amount` of debt was repaid (paid or made claimable).
    event DebtRepaid(uint256 amount, uint256 totalDebt);
    event Deposited(address indexed from, uint256 amount);
    event Withdrawn(address indexed vendor, uint256 amount);
    event Claimed(address indexed customer, address indexed to, uint256 amount);
    /// @notice After the last period settled, the free escrow went back to the vendor.
    event EscrowReturned(address indexed vendor, uint256 amount);
    /// @notice `proposer` proposed `oracleSet` (threshold (1) | count (1) | oracles (20 each)).
    event OracleSetProposed(address indexed proposer, bytes oracleSet);
    /// @notice Both parties agreed a new oracle set; `config` is the new Config, `configHash` its hash.
    event OracleSetChanged(bytes config, bytes32 configHash);
}
