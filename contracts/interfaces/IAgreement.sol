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
    //   [optional settlement section, absent = no challenge window, 30-day report deadline, 14-day
    //   arbitration window, default credit = the period's maximum, no arbiters, no auditors:
    //   | challengeWindow (4, seconds) | reportDeadline (4) | arbitrationWindow (4)
    //   | flags (1: bit 0 default credit = max (else 0), bit 1 parties may be oracles/arbiters)
    //   | disputeBond (12) | arbiterThreshold (1) | arbiterCount (1) | arbiters (20 each, ascending)
    //   | auditorCount (1) | auditors (20 each, ascending)]
    // oracle/chain/config.py's Config.encoded() writes exactly this; tests prove both agree.

    /// @notice Where a period stands: no report yet; proposed (inside or after its challenge window);
    /// disputed; and the three ways it ends: resolved by the arbiters, final (as reported), defaulted.
    enum PeriodState {
        None,
        Proposed,
        Disputed,
        Resolved,
        Final,
        Defaulted
    }

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

    /// @notice The customer and the vendor are the same address.
    /// @param party the address given for both
    error CustomerIsVendor(address party);
    /// @notice The vendor or the customer is an oracle or an arbiter (allowed only with the
    /// Config's party-signers flag).
    /// @param party the party found among the signers
    error PartyIsSigner(address party);
    /// @notice An arbiter is also an oracle: the arbiters would judge their own report.
    /// @param arbiter the address in both sets
    error ArbiterIsOracle(address arbiter);
    /// @notice The arbiter threshold is 0 with arbiters, above their count, or there are no arbiters
    /// although the Config has a challenge window (or more than 32).
    /// @param threshold the threshold given
    /// @param count the number of arbiters
    error InvalidThreshold(uint256 threshold, uint256 count);
    /// @notice The settlement section is truncated, has a zero deadline or arbitration window,
    /// unknown flags, or unsorted arbiters or auditors, at byte `offset`.
    /// @param offset where the problem is in the Config
    error InvalidSettlement(uint256 offset);
    /// @notice Every period's maximum credit together would not fit the agreement's books (2^104).
    /// @param maxCreditPerPeriod the maximum credit of one period
    error CreditsTooLarge(uint256 maxCreditPerPeriod);

    // ---------------------------------------------------------------- errors: consent

    /// @notice The customer has not accepted the agreement yet: no period settles before it does.
    error NotAccepted();
    /// @notice The customer accepted already (and the vendor can no longer cancel).
    error AlreadyAccepted();
    /// @notice The vendor cancelled the agreement before the customer accepted it.
    error AgreementCancelled();

    // ---------------------------------------------------------------- errors: settlement

    /// @notice `period` is in a state that does not allow this call.
    /// @param period the period
    /// @param state its PeriodState
    error WrongPeriodState(uint256 period, uint8 state);
    /// @notice A revision must be higher than the proposal's.
    /// @param period the period
    /// @param revision the revision given
    /// @param current the proposal's revision
    error StaleRevision(uint256 period, uint256 revision, uint256 current);
    /// @notice The challenge window of `period` closed at `windowEnd`: no revision or dispute any more.
    /// @param period the period
    /// @param windowEnd its end (unix seconds)
    error ChallengeWindowClosed(uint256 period, uint256 windowEnd);
    /// @notice The challenge window of `period` is still open until `windowEnd`: it cannot be finalised yet.
    /// @param period the period
    /// @param windowEnd its end (unix seconds)
    error ChallengeWindowOpen(uint256 period, uint256 windowEnd);
    /// @notice The report deadline of `period` passed: it settles by default now.
    /// @param period the period
    /// @param deadline the deadline (unix seconds)
    error ReportDeadlinePassed(uint256 period, uint256 deadline);
    /// @notice The arbitration window of `period` closed: it settles by default now.
    /// @param period the period
    /// @param deadline its end (unix seconds)
    error ArbitrationWindowClosed(uint256 period, uint256 deadline);
    /// @notice `period` cannot settle by default before `due`.
    /// @param period the period
    /// @param due the report deadline, or the end of the arbitration window (unix seconds)
    error DeadlineNotPassed(uint256 period, uint256 due);
    /// @notice Only the customer or an auditor named in the Config may dispute.
    /// @param caller the sender
    error NotDisputer(address caller);
    /// @notice Periods are still unsettled: the escrow returns to the vendor after the last one.
    /// @param next the next unsettled period
    /// @param count the number of periods
    error PeriodsOutstanding(uint256 next, uint256 count);

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

    /// @notice The customer accepted the agreement: periods may settle from now on.
    /// @param customer the customer
    event Accepted(address indexed customer);
    /// @notice The vendor cancelled the agreement before the customer accepted; `amount` went back.
    /// @param vendor the vendor
    /// @param amount the escrow returned
    event Cancelled(address indexed vendor, uint256 amount);
    /// @notice A signed report for `period` was proposed; it pays `credit` unless disputed in the window.
    /// @param period the period
    /// @param revision the report's revision
    /// @param termsHash the terms the oracles measured against
    /// @param evidenceRoot the commitment to the evidence
    /// @param attainments the packed attainments
    /// @param signatures the oracles' signatures
    /// @param credit the credit computed from the attainments
    event ReportProposed(
        uint256 indexed period,
        uint256 revision,
        bytes32 termsHash,
        bytes32 evidenceRoot,
        bytes attainments,
        bytes signatures,
        uint256 credit
    );
    /// @notice A higher revision replaced the proposal for `period`; its window restarted.
    /// @param period the period
    /// @param revision the new revision
    /// @param credit the new credit
    /// @param windowEnd the new end of the challenge window
    event ReportRevised(uint256 indexed period, uint256 revision, uint256 credit, uint256 windowEnd);
    /// @notice The proposal for `period` became final after its window; `credit` was settled.
    /// @param period the period
    /// @param credit the credit
    event ReportFinalized(uint256 indexed period, uint256 credit);
    /// @notice `disputer` disputed the proposal for `period`, posting `bond`.
    /// @param period the period
    /// @param disputer the customer or an auditor
    /// @param reasonHash a hash of the disputer's reasons (published off-chain)
    /// @param bond the bond posted
    event Disputed(uint256 indexed period, address indexed disputer, bytes32 reasonHash, uint256 bond);
    /// @notice M arbiters resolved the dispute of `period`; `credit` was settled.
    /// @param period the period
    /// @param evidenceRoot the evidence the arbiters measured
    /// @param attainments the resolved attainments
    /// @param signatures the arbiters' signatures
    /// @param credit the resolved credit
    /// @param changed whether it differs from the proposed credit (the disputer gets the bond back)
    event Resolved(
        uint256 indexed period, bytes32 evidenceRoot, bytes attainments, bytes signatures, uint256 credit, bool changed
    );
    /// @notice `period` settled by default (no report by the deadline, or no resolution in time).
    /// @param period the period
    /// @param credit the default credit (the period's maximum, or zero)
    event SettledByDefault(uint256 indexed period, uint256 credit);
    /// @notice The dispute bond went back to the disputer.
    /// @param period the period
    /// @param disputer the disputer
    /// @param amount the bond
    event BondReturned(uint256 indexed period, address indexed disputer, uint256 amount);
    /// @notice The push of the bond failed; the disputer may `claimBond`.
    /// @param period the period
    /// @param disputer the disputer
    /// @param amount the bond
    event BondOwed(uint256 indexed period, address indexed disputer, uint256 amount);
    /// @notice The arbiters upheld the proposal: the bond joined the escrow.
    /// @param period the period
    /// @param disputer the disputer
    /// @param amount the bond
    event BondForfeited(uint256 indexed period, address indexed disputer, uint256 amount);
    /// @notice A disputer collected a bond whose push had failed.
    /// @param disputer the disputer
    /// @param amount the bond
    event BondClaimed(address indexed disputer, uint256 amount);

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
    /// @dev Rejects a customer equal to the vendor, parties among the oracles or arbiters (unless the
    /// Config allows it), arbiters among the oracles, and bad thresholds.
    /// @param vendor_ the party escrowing credits
    /// @param cfg the packed Config: parties, asset, terms hash, credit schedule, periods, oracle set,
    /// optional settlement section
    /// @param acceptance empty, or the customer's 65-byte EIP-712 Acceptance(configHash, vendor)
    /// signature under the calling factory's domain: the agreement starts accepted
    function initialize(address vendor_, bytes calldata cfg, bytes calldata acceptance) external;

    /// @notice The customer accepts the agreement; periods settle only after this.
    function accept() external;

    /// @notice Accept with the customer's signature (anyone may relay it).
    /// @param signature the customer's 65-byte signature of `acceptanceDigest()`
    function acceptWithSignature(bytes calldata signature) external;

    /// @notice The EIP-712 digest of Acceptance(configHash, vendor) under this agreement's domain.
    /// @return the digest the customer signs for `acceptWithSignature`
    function acceptanceDigest() external view returns (bytes32);

    /// @notice Before the customer accepts, the vendor may cancel and get the whole escrow back.
    function cancel() external;

    /// @notice Whether the customer accepted.
    /// @return true once accepted
    function accepted() external view returns (bool);

    /// @notice Whether the vendor cancelled.
    /// @return true once cancelled
    function cancelled() external view returns (bool);

    // ---------------------------------------------------------------- reports

    /// @notice Settle `period`: verify the oracles' signatures over the report (revision 0), compute
    /// the credit from the schedule, and pay it to the customer (or make it claimable, or record debt).
    /// With a challenge window in the Config, the report is only proposed (`ReportProposed`).
    /// @dev Anyone may submit; only the signatures matter. With a challenge window, refused after the
    /// report deadline; without one, a late report settles unless the period was settled by default. `signatures` is a concatenation of
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

    /// @notice `submitReport` for any revision: without a challenge window it settles as
    /// `submitReport` does; with one it proposes, or replaces a proposal with a lower revision still
    /// inside its window (`ReportRevised`, the window restarts).
    /// @param cfg the agreement's current packed Config
    /// @param period zero-based period index; must be `nextPeriod`
    /// @param revision the report's revision (higher replaces lower)
    /// @param termsHash_ the terms the oracles measured against
    /// @param evidenceRoot commitment to the evidence
    /// @param attainments packed attainments
    /// @param signatures the oracles' EIP-712 signatures
    /// @return credit the credit computed for the report
    function submitRevision(
        bytes calldata cfg,
        uint32 period,
        uint32 revision,
        bytes32 termsHash_,
        bytes32 evidenceRoot,
        bytes calldata attainments,
        bytes calldata signatures
    ) external returns (uint256 credit);

    /// @notice The EIP-712 digest the oracles sign for a report.
    /// @param period zero-based period index
    /// @param revision the report's revision
    /// @param termsHash_ the terms hash the report is for
    /// @param evidenceRoot commitment to the evidence
    /// @param attainments packed attainments (see `submitReport`)
    /// @return the typed-data digest under this agreement's domain (chain id and address)
    function reportDigest(
        uint32 period,
        uint32 revision,
        bytes32 termsHash_,
        bytes32 evidenceRoot,
        bytes calldata attainments
    ) external view returns (bytes32);

    /// @notice The EIP-712 digest the arbiters sign to resolve a disputed period.
    /// @param period zero-based period index
    /// @param attainments the resolved packed attainments
    /// @param evidenceRoot the evidence the arbiters measured
    /// @return the typed-data digest under this agreement's domain
    function resolutionDigest(uint32 period, bytes calldata attainments, bytes32 evidenceRoot)
        external
        view
        returns (bytes32);

    // ---------------------------------------------------------------- challenge, dispute, deadline

    /// @notice Pay a proposal whose challenge window passed undisputed, exactly as an immediate report
    /// would have (push, claimable or debt). Anyone may call.
    /// @param period the proposed period
    function finalize(uint32 period) external;

    /// @notice Dispute the proposal for `period` inside its window, posting the Config's dispute bond
    /// (ETH as msg.value; an ERC-20 approved first). Only the customer or a named auditor.
    /// @param cfg the agreement's current packed Config
    /// @param period the proposed period
    /// @param reasonHash a hash of the reasons, published off-chain
    function dispute(bytes calldata cfg, uint32 period, bytes32 reasonHash) external payable;

    /// @notice Settle a disputed period with M arbiters' signed attainments, inside the arbitration
    /// window; the bond returns to the disputer if the credit changed, else it joins the escrow.
    /// @param cfg the agreement's current packed Config
    /// @param period the disputed period
    /// @param evidenceRoot the evidence the arbiters measured
    /// @param attainments the resolved packed attainments
    /// @param signatures the arbiters' signatures (66-byte entries, arbiter indexes ascending)
    /// @return credit the resolved credit
    function resolve(
        bytes calldata cfg,
        uint32 period,
        bytes32 evidenceRoot,
        bytes calldata attainments,
        bytes calldata signatures
    ) external returns (uint256 credit);

    /// @notice Settle the next period at the default credit: no report by its deadline (period end +
    /// report deadline), or a dispute unresolved after the arbitration window (the bond returns).
    /// Anyone may call, so that no escrow stays locked when a party is absent.
    /// @param cfg the agreement's current packed Config
    /// @param period the next period
    /// @return credit the default credit (the period's maximum, or zero)
    function settleByDefault(bytes calldata cfg, uint32 period) external returns (uint256 credit);

    /// @notice After the last period (or a cancellation), send the vendor everything above the
    /// customer's due amounts (debt, claimable credits, bonds). Anyone may call.
    /// @return amount the amount returned
    function claimRefund() external returns (uint256 amount);

    /// @notice Collect a dispute bond whose push failed.
    function claimBond() external;

    /// @notice Bonds owed to a disputer whose push failed.
    /// @param disputer the disputer
    /// @return the amount to collect with `claimBond`
    function bondRefunds(address disputer) external view returns (uint256);

    /// @notice Where `period` stands.
    /// @param period zero-based period index
    /// @return the state
    function periodState(uint32 period) external view returns (PeriodState);

    /// @notice The proposal for `period`.
    /// @param period zero-based period index
    /// @return state the period's state
    /// @return credit the proposed credit
    /// @return revision the proposal's revision
    /// @return windowEnd the end of its challenge window (unix seconds)
    /// @return disputedAt when it was disputed (0 if not)
    function proposal(uint32 period)
        external
        view
        returns (PeriodState state, uint256 credit, uint32 revision, uint256 windowEnd, uint256 disputedAt);

    /// @notice The open dispute of `period`, or zeros.
    /// @param period zero-based period index
    /// @return disputer who disputed
    /// @return bond the bond posted
    function openDispute(uint32 period) external view returns (address disputer, uint256 bond);

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

    /// @notice The escrow the customer is protected by: maximum credit of every unsettled period
    /// (proposed or disputed included), plus unpaid debt, unclaimed credits and dispute bonds held.
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

    /// @notice Escrow held for others than the vendor: claimable credits, open and owed bonds.
    /// @return the amount in the asset's smallest unit
    function held() external view returns (uint256);

    /// @notice keccak256 of the proposed oracle set, or zero.
    /// @return the hash
    function pendingOracleSetHash() external view returns (bytes32);

    /// @notice Who proposed the pending oracle set, or zero.
    /// @return the proposer
    function pendingProposer() external view returns (address);
}
