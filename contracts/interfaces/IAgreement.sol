// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title The slacomp SLA agreement: functions, errors and events
/// @notice One agreement per vendor/customer pair. The vendor escrows credits; oracles attest
/// monthly KPI attainments; the agreement computes the credit from its schedule and pays it.
interface IAgreement {
    // The agreement's Config is one packed byte string (big-endian, no padding); only its keccak256
    // (`configHash`) is stored, and calls that need it pass it back in calldata. Layout (offsets
    // and sizes named in libraries/ConfigLib.sol):
    //   customer (20) | asset (20, zero = ETH) | termsHash (32) | monthlyFee (12) | creditCapBps (2)
    //   | threshold (1) | oracleCount (1) | oracles (20 each, strictly ascending)
    //   | boundCount (2) | bounds (5 each, unix seconds; period i = [bounds[i], bounds[i+1]))
    //   | siteCount (2) | siteFees (12 each)
    //   | objectiveCount (1) | per objective: scope (1: 0 estate, 1 per site, 2 per device)
    //     | deviceFee (12) | tierCount (1) | tiers (4 each: belowBps (2) | creditBps (2);
    //     belowBps strictly descending, creditBps non-decreasing)
    // oracle/chain/config.py's Config.encoded() writes exactly this; tests prove both agree.

    // ---------------------------------------------------------------- errors: parties and amounts

    /// @notice The vendor, the customer or a claim's recipient is the zero address.
    error ZeroAddress();
    /// @notice The Config's asset is neither zero (ETH) nor a contract.
    /// @param asset the address given as the ERC-20 token
    error AssetHasNoCode(address asset);
    /// @notice A deposit or withdrawal of zero.
    error ZeroAmount();
    /// @notice Only the vendor may call this.
    /// @param caller the sender
    error NotVendor(address caller);
    /// @notice Only the customer may call this.
    /// @param caller the sender
    error NotCustomer(address caller);
    /// @notice Only the vendor or the customer may call this.
    /// @param caller the sender
    error NotParty(address caller);

    // ---------------------------------------------------------------- errors: the Config

    /// @notice The Config passed in does not hash to the agreement's (current) `configHash`.
    /// @param expected the stored hash
    /// @param given the hash of the Config passed in
    error ConfigMismatch(bytes32 expected, bytes32 given);
    /// @notice The Config's monthly fee is zero.
    error ZeroMonthlyFee();
    /// @notice The credit cap is above 100% (10,000 bps) of the monthly fee.
    /// @param capBps the cap given
    error CreditCapTooHigh(uint256 capBps);
    /// @notice Fewer than two period bounds: the Config has no period.
    /// @param boundCount the number of bounds given
    error TooFewBounds(uint256 boundCount);
    /// @notice Bound `index` is not after bound `index - 1` (periods must have positive length, in order).
    /// @param index the first offending bound
    error BoundsNotAscending(uint256 index);
    /// @notice The Config has no objective.
    error NoObjectives();
    /// @notice An objective has no credit tier.
    /// @param objective the objective's index
    error NoTiers(uint256 objective);
    /// @notice A tier's belowBps is 0 or not below the previous tier's, or its creditBps is above
    /// 10,000 or below the previous tier's.
    /// @param objective the objective's index
    /// @param tier the tier's index within the objective
    error InvalidTier(uint256 objective, uint256 tier);
    /// @notice A per-site objective in a Config without sites.
    /// @param objective the objective's index
    error NoSites(uint256 objective);
    /// @notice An objective's scope is not 0 (estate), 1 (per site) or 2 (per device).
    /// @param objective the objective's index
    /// @param scope the scope given
    error UnknownScope(uint256 objective, uint256 scope);
    /// @notice The Config's length is not what its counts say.
    /// @param expected the length the counts give
    /// @param given the actual length
    error ConfigLength(uint256 expected, uint256 given);
    /// @notice An oracle set violates 1 <= threshold <= count <= 32, is truncated or has trailing
    /// bytes, or its oracles are not strictly ascending (no zero address, no duplicates).
    error InvalidOracleSet();

    // ---------------------------------------------------------------- errors: reports

    /// @notice The report is for other terms than the agreement's.
    /// @param expected the agreement's termsHash
    /// @param given the report's termsHash
    error TermsHashMismatch(bytes32 expected, bytes32 given);
    /// @notice `period` was settled already.
    /// @param period the report's period
    error PeriodAlreadySettled(uint256 period);
    /// @notice `period` is after the next unsettled period: periods settle in order.
    /// @param period the report's period
    /// @param next the next unsettled period
    error PeriodOutOfOrder(uint256 period, uint256 next);
    /// @notice `period` has not ended yet.
    /// @param period the report's period
    /// @param endsAt its end (unix seconds)
    error PeriodNotEnded(uint256 period, uint256 endsAt);
    /// @notice The agreement has no period `period` (all periods are settled).
    /// @param period the report's period
    error NoSuchPeriod(uint256 period);
    /// @notice The packed attainments do not match the objectives (count, subjects) at `offset`.
    /// @param offset byte offset in the attainments
    error MalformedAttainments(uint256 offset);
    /// @notice An attainment above 10,000 bps.
    /// @param offset byte offset of the attainment
    /// @param bps the attainment given
    error AttainmentOutOfRange(uint256 offset, uint256 bps);
    /// @notice The signatures are empty or not a whole number of 66-byte entries.
    /// @param length their length in bytes
    error MalformedSignatures(uint256 length);
    /// @notice Fewer signatures than the threshold.
    /// @param given the number of signatures
    /// @param threshold the number required
    error InsufficientSignatures(uint256 given, uint256 threshold);
    /// @notice Signature entry `index` has an oracle index not above the previous one's, or out of range.
    /// @param index the entry's position
    error SignatureOrder(uint256 index);
    /// @notice Signature entry `index` has a high s (the malleable twin of a valid signature).
    /// @param index the entry's position
    error HighSSignature(uint256 index);
    /// @notice Signature entry `index` does not recover to any address.
    /// @param index the entry's position
    error InvalidSignature(uint256 index);
    /// @notice Signature entry `index` recovers to `signer`, not to the oracle at its oracle index.
    /// @param index the entry's position
    /// @param signer the recovered address
    error NotAnOracle(uint256 index, address signer);

    // ---------------------------------------------------------------- errors: escrow

    /// @notice The declared deposit and the ETH sent differ (for a token agreement, no ETH may be sent).
    /// @param declared the amount declared (0 for a token agreement)
    /// @param sent msg.value
    error DepositMismatch(uint256 declared, uint256 sent);
    /// @notice The vendor asked for more than the escrow above the reserve.
    /// @param requested the amount asked for
    /// @param withdrawable the most that may be withdrawn now
    error ExceedsWithdrawable(uint256 requested, uint256 withdrawable);
    /// @notice An ETH or token transfer failed (or a token returned false).
    /// @param to the recipient
    /// @param amount the amount
    error TransferFailed(address to, uint256 amount);
    /// @notice The customer has no claimable credit.
    error NothingToClaim();

    // ---------------------------------------------------------------- errors: oracle rotation

    /// @notice No oracle set was proposed.
    error NoPendingOracleSet();
    /// @notice The new Config's oracle set is not the proposed one.
    /// @param expected the hash of the proposed oracle set
    /// @param given the hash of the new Config's oracle set
    error OracleSetMismatch(bytes32 expected, bytes32 given);
    /// @notice A proposal must be accepted by the other party.
    /// @param proposer the party that proposed it
    error ProposerCannotAccept(address proposer);

    // ---------------------------------------------------------------- events

    /// @notice The agreement was set up; `config` is the full schedule whose hash is `configHash`.
    /// @param vendor the party escrowing credits
    /// @param customer the party credits are paid to
    /// @param asset the ERC-20 token, or zero for ETH
    /// @param termsHash the hash of the agreed terms
    /// @param configHash keccak256 of `config`
    /// @param maxCreditPerPeriod the most one period can cost (reserved per unsettled period)
    /// @param config the packed Config
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
    /// @param period the settled period
    /// @param termsHash the terms the oracles measured against
    /// @param evidenceRoot the commitment to the evidence
    /// @param attainments the packed attainments
    /// @param signatures the oracles' signatures
    /// @param credit the credit owed for the period
    event ReportAccepted(
        uint256 indexed period,
        bytes32 termsHash,
        bytes32 evidenceRoot,
        bytes attainments,
        bytes signatures,
        uint256 credit
    );
    /// @notice `amount` was transferred to the customer (`period` = type(uint256).max for debt repayment).
    /// @param period the period the credit is for, or DEBT_PERIOD
    /// @param customer the recipient
    /// @param amount the amount paid
    event CreditPaid(uint256 indexed period, address indexed customer, uint256 amount);
    /// @notice The push to the customer failed; `amount` became claimable.
    /// @param period the period the credit is for, or DEBT_PERIOD
    /// @param customer the intended recipient
    /// @param amount the amount made claimable
    event CreditDeferred(uint256 indexed period, address indexed customer, uint256 amount);
    /// @notice Escrow was short: `amount` of the period's credit is owed as debt.
    /// @param period the period whose credit was short
    /// @param amount the unpaid part
    /// @param totalDebt the debt now outstanding
    event DebtRecorded(uint256 indexed period, uint256 amount, uint256 totalDebt);
    /// @notice `amount` of debt was repaid (paid or made claimable).
    /// @param amount the amount repaid
    /// @param totalDebt the debt still outstanding
    event DebtRepaid(uint256 amount, uint256 totalDebt);
    /// @notice `amount` arrived in the escrow from `from`.
    /// @param from the depositor
    /// @param amount the amount received (for fee-on-transfer tokens, what arrived)
    event Deposited(address indexed from, uint256 amount);
    /// @notice The vendor withdrew `amount` of escrow above the reserve.
    /// @param vendor the vendor
    /// @param amount the amount withdrawn
    event Withdrawn(address indexed vendor, uint256 amount);
    /// @notice The customer collected `amount` of claimable credit, sent to `to`.
    /// @param customer the customer
    /// @param to the recipient
    /// @param amount the amount claimed
    event Claimed(address indexed customer, address indexed to, uint256 amount);
    /// @notice After the last period settled, the free escrow went back to the vendor.
    /// @param vendor the vendor
    /// @param amount the amount returned
    event EscrowReturned(address indexed vendor, uint256 amount);
    /// @notice `proposer` proposed `oracleSet` (threshold (1) | count (1) | oracles (20 each)).
    /// @param proposer the vendor or the customer
    /// @param oracleSet the proposed set
    event OracleSetProposed(address indexed proposer, bytes oracleSet);
    /// @notice Both parties agreed a new oracle set; `config` is the new Config, `configHash` its hash.
    /// @param config the new packed Config
    /// @param configHash keccak256 of `config`
    event OracleSetChanged(bytes config, bytes32 configHash);

    // ---------------------------------------------------------------- set-up

    /// @notice Set up a freshly cloned agreement (called once, by the factory, in the clone's creation tx).
    /// @param vendor_ the party escrowing credits
    /// @param cfg the packed Config: parties, asset, terms hash, credit schedule, periods, oracle set
    function initialize(address vendor_, bytes calldata cfg) external;

    // ---------------------------------------------------------------- reports

    /// @notice Settle `period`: verify the oracles' signatures over the report, compute the credit
    /// from the schedule, and pay it to the customer (or make it claimable, or record debt).
    /// @dev Anyone may submit; only the signatures matter. `signatures` is a concatenation of
    /// 66-byte entries (oracle index, r, s, v) with strictly ascending oracle indexes.
    /// @param cfg the agreement's current packed Config (must hash to `configHash`)
    /// @param period zero-based period index; must be `nextPeriod`
    /// @param termsHash_ the terms the oracles measured against; must be the Config's termsHash
    /// @param evidenceRoot commitment to the evidence the oracles measured
    /// @param attainments per objective: uint16 subject count, then that many uint16 attainments (bps)
    /// @param signatures the oracles' EIP-712 signatures
    /// @return credit the credit owed for the period (paid, deferred or recorded as debt)
    function submitReport(
        bytes calldata cfg,
        uint32 period,
        bytes32 termsHash_,
        bytes32 evidenceRoot,
        bytes calldata attainments,
        bytes calldata signatures
    ) external returns (uint256 credit);

    /// @notice The EIP-712 digest the oracles sign for a report.
    /// @param period zero-based period index
    /// @param termsHash_ the terms hash the report is for
    /// @param evidenceRoot commitment to the evidence
    /// @param attainments packed attainments (see `submitReport`)
    /// @return the typed-data digest under this agreement's domain (chain id and address)
    function reportDigest(uint32 period, bytes32 termsHash_, bytes32 evidenceRoot, bytes calldata attainments)
        external
        view
        returns (bytes32);

    /// @notice The credit the schedule gives for `attainments` (capped), as `submitReport` computes it.
    /// @param cfg a packed Config (validated, not checked against this agreement: a pure calculator)
    /// @param attainments packed attainments (see `submitReport`)
    /// @return credit amount in the asset's smallest unit
    function creditFor(bytes calldata cfg, bytes calldata attainments) external pure returns (uint256);

    // ---------------------------------------------------------------- escrow

    /// @notice Add to the escrow. Anyone may deposit; outstanding debt is repaid first.
    /// @dev For ETH send `amount` as msg.value; for an ERC-20, approve first. Fee-on-transfer
    /// tokens are credited with what actually arrived.
    /// @param amount the amount to deposit
    function deposit(uint256 amount) external payable;

    /// @notice Plain ETH transfers to an ETH agreement are deposits.
    receive() external payable;

    /// @notice Repay debt from free escrow (e.g. after tokens were sent without `deposit`). Anyone may call.
    function repayDebt() external;

    /// @notice Vendor withdraws escrow above the customer's reserve.
    /// @param amount the amount to withdraw; at most `withdrawable()`
    function withdraw(uint256 amount) external;

    /// @notice Customer collects credits whose push failed.
    /// @param to where to send them
    function claim(address to) external;

    /// @notice The escrow the customer is protected by: maximum credit of every unsettled period,
    /// plus unpaid debt and unclaimed credits.
    /// @return the reserve in the asset's smallest unit
    function reserve() external view returns (uint256);

    /// @notice What the vendor may withdraw now: the escrow balance above `reserve()`.
    /// @return the withdrawable amount
    function withdrawable() external view returns (uint256);

    /// @notice Escrow balance (claimable credits included).
    /// @return the balance in the asset's smallest unit
    function escrowBalance() external view returns (uint256);

    // ---------------------------------------------------------------- oracle rotation

    /// @notice Propose a new oracle set; it takes effect when the other party accepts it.
    /// @param oracleSet threshold (1) | count (1) | oracles (20 each, strictly ascending)
    function proposeOracleSet(bytes calldata oracleSet) external;

    /// @notice Accept the other party's proposal; the oracle set and threshold change at once.
    /// @param cfg the current packed Config (must hash to `configHash`)
    /// @param newCfg the same Config with the proposed oracle set in place of the current one
    function acceptOracleSet(bytes calldata cfg, bytes calldata newCfg) external;

    // ---------------------------------------------------------------- state

    /// @notice The party escrowing credits.
    /// @return the vendor
    function vendor() external view returns (address);

    /// @notice The party credits are paid to.
    /// @return the customer
    function customer() external view returns (address);

    /// @notice The escrow asset: an ERC-20 token, or zero for ETH.
    /// @return the asset
    function asset() external view returns (address);

    /// @notice The hash of the agreed terms (the Config's termsHash).
    /// @return the terms hash
    function termsHash() external view returns (bytes32);

    /// @notice keccak256 of the Config in force (changes only with an oracle rotation).
    /// @return the Config hash
    function configHash() external view returns (bytes32);

    /// @notice The next period to settle (periods settle in order, once).
    /// @return the zero-based period index
    function nextPeriod() external view returns (uint32);

    /// @notice The number of periods.
    /// @return the count
    function periodCount() external view returns (uint32);

    /// @notice The most one period can cost; the reserve holds this much per unsettled period.
    /// @return the amount in the asset's smallest unit
    function maxCreditPerPeriod() external view returns (uint96);

    /// @notice Credits whose push failed, held for the customer to `claim`.
    /// @return the amount in the asset's smallest unit
    function claimable() external view returns (uint128);

    /// @notice Credits the escrow was too short to pay, repaid first by the next deposits.
    /// @return the amount in the asset's smallest unit
    function debt() external view returns (uint128);

    /// @notice keccak256 of the proposed oracle set, or zero.
    /// @return the hash
    function pendingOracleSetHash() external view returns (bytes32);

    /// @notice Who proposed the pending oracle set, or zero.
    /// @return the proposer
    function pendingProposer() external view returns (address);
}
