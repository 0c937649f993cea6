// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {IAgreement} from "./interfaces/IAgreement.sol";
import {ConfigLib} from "./libraries/ConfigLib.sol";
import {CreditLib} from "./libraries/CreditLib.sol";
import {SettlementLib} from "./libraries/SettlementLib.sol";
import {SignatureLib} from "./libraries/SignatureLib.sol";

/// @title Agreement: one SLA between a vendor and a customer, with escrowed credits
/// @notice Guarantees: nothing settles before the customer accepted; a period settles at most once, in
/// order, only after it ended, with M oracle signatures (then, with a challenge window, unless disputed
/// and resolved by M arbiters) or by default after its deadline; the credit is computed here from the
/// agreed schedule (never chosen by an oracle) and paid, or left claimable / as debt; nothing locks forever.
/// @dev Deployed as EIP-1167 clones by AgreementFactory: a clone runs no constructor, so its
/// ReentrancyGuard status starts at 0, which `nonReentrant` treats as not entered (it only refuses
/// ENTERED = 2). Only the hash of the packed Config (layout in IAgreement, parsed by ConfigLib)
/// lives in storage; report and rotation calls pass the Config back in calldata.
contract Agreement is IAgreement, Initializable, ReentrancyGuard, EIP712 {
    using ConfigLib for bytes;

    /// @dev Gas forwarded with an ETH push; a customer that needs more claims instead.
    uint256 internal constant PUSH_GAS = 50_000;
    /// @notice `period` value in CreditPaid/CreditDeferred for repayments of debt.
    uint256 public constant DEBT_PERIOD = type(uint256).max;
    /// @notice The EIP-712 type of a report.
    bytes32 public constant REPORT_TYPEHASH = keccak256(
        "Report(uint32 period,uint32 revision,bytes32 termsHash,bytes32 evidenceRoot,bytes attainments)"
    );
    /// @notice The EIP-712 type of the arbiters' resolution of a disputed period.
    bytes32 public constant RESOLUTION_TYPEHASH =
        keccak256("Resolution(uint32 period,bytes attainments,bytes32 evidenceRoot)");
    /// @notice The EIP-712 type of the customer's acceptance of the agreement.
    bytes32 public constant ACCEPTANCE_TYPEHASH = keccak256("Acceptance(bytes32 configHash,address vendor)");
    /// @dev The factory's EIP-712 domain, under which a customer accepts before the agreement exists.
    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 internal constant FACTORY_NAME_HASH = keccak256("slacomp AgreementFactory");
    bytes32 internal constant FACTORY_VERSION_HASH = keccak256("1");

    uint8 internal constant ACCEPTED = 1;
    uint8 internal constant CANCELLED = 2;

    // Storage after the inherited ReentrancyGuard status and EIP712 name/version fallbacks.
    // The hot slot, read and written by every report: the next period, the acceptance flags, the
    // escrow held for others (claimable credits, open bonds, bond refunds) and the debt.
    uint32 public nextPeriod;
    uint8 internal _flags;
    uint104 internal _held;
    uint104 internal _debt;
    address public vendor;
    uint32 public periodCount;
    // copies of Config fields for views and vendor/customer calls (reports read the Config)
    address public customer;
    uint96 public maxCreditPerPeriod;
    address public asset; // address(0) = native ETH
    bytes32 public termsHash;
    // configHash: read by every report
    bytes32 public configHash;
    uint128 internal _claimable; // the customer's part of _held
    // rotation (written only when the oracle set changes)
    bytes32 public pendingOracleSetHash;
    address public pendingProposer;
    // settlement (written only with a challenge window, a dispute or a default)
    mapping(uint256 period => Proposal) internal _proposals;
    mapping(uint256 period => Dispute) internal _disputes;
    /// @inheritdoc IAgreement
    mapping(address disputer => uint256) public bondRefunds;

    /// @dev The proposal for a period (only the next period can have one).
    struct Proposal {
        uint104 credit;
        uint40 windowEnd;
        uint32 revision;
        PeriodState state;
        uint40 disputedAt;
    }

    /// @dev The open dispute of a period: who posted which bond.
    struct Dispute {
        address disputer;
        uint96 bond;
    }

    /// @dev The implementation itself can never be initialized; only its clones are.
    constructor() EIP712("slacomp Agreement", "1") {
        _disableInitializers();
    }

    modifier onlyVendor() {
        if (msg.sender != vendor) revert NotVendor(msg.sender);
        _;
    }

    // ================================================================ set-up and consent

    /// @inheritdoc IAgreement
    function initialize(address vendor_, bytes calldata cfg, bytes calldata acceptance) external initializer {
        _setUp(vendor_, cfg);
        if (acceptance.length != 0) {
            // the customer signed under the domain of the factory calling us (a clone initialised
            // by anyone else cannot reuse a signature made for the factory)
            bytes32 domain = keccak256(
                abi.encode(DOMAIN_TYPEHASH, FACTORY_NAME_HASH, FACTORY_VERSION_HASH, block.chainid, msg.sender)
            );
            _acceptSigned(MessageHashUtils.toTypedDataHash(domain, _acceptanceHash()), acceptance);
        }
    }

    /// @dev The body of `initialize` (apart, as the `initializer` modifier's locals fill the stack).
    function _setUp(address vendor_, bytes calldata cfg) private {
        // checks
        if (vendor_ == address(0)) revert ZeroAddress();
        ConfigLib.Layout memory l = cfg.layout();
        (uint256 maxCredit, uint256 s) = cfg.validate(l);
        address customer_ = cfg.readAddress(ConfigLib.CUSTOMER_AT);
        address asset_ = cfg.readAddress(ConfigLib.ASSET_AT);
        if (customer_ == address(0)) revert ZeroAddress();
        if (asset_ != address(0) && asset_.code.length == 0) revert AssetHasNoCode(asset_);
        SettlementLib.checkSigners(cfg, s, vendor_, customer_);
        // claimable + debt never exceed every period's maximum credit: they fit the hot slot
        if (maxCredit * (l.boundCount - 1) > type(uint104).max) revert CreditsTooLarge(maxCredit);
        bytes32 terms = bytes32(cfg[ConfigLib.TERMS_AT:ConfigLib.TERMS_AT + 32]);
        bytes32 h = keccak256(cfg);

        // effects
        vendor = vendor_;
        periodCount = uint32(l.boundCount - 1);
        customer = customer_;
        maxCreditPerPeriod = uint96(maxCredit);
        if (asset_ != address(0)) asset = asset_;
        termsHash = terms;
        configHash = h;
        emit AgreementConfigured(vendor_, customer_, asset_, terms, h, maxCredit, cfg);
    }

    /// @inheritdoc IAgreement
    function accept() external {
        if (msg.sender != customer) revert NotCustomer(msg.sender);
        _accept();
    }

    /// @inheritdoc IAgreement
    function acceptWithSignature(bytes calldata signature) external {
        _acceptSigned(_hashTypedDataV4(_acceptanceHash()), signature);
    }

    /// @inheritdoc IAgreement
    function acceptanceDigest() external view returns (bytes32) {
        return _hashTypedDataV4(_acceptanceHash());
    }

    /// @inheritdoc IAgreement
    function cancel() external onlyVendor nonReentrant {
        // checks
        uint8 flags = _flags;
        if (flags & ACCEPTED != 0) revert AlreadyAccepted();
        if (flags & CANCELLED != 0) revert AgreementCancelled();
        // effects
        _flags = flags | CANCELLED;
        address asset_ = asset;
        uint256 amount = _balanceOf(asset_);
        emit Cancelled(msg.sender, amount);
        // interactions (a failed push stays withdrawable: the reserve of a cancelled agreement is zero)
        if (amount != 0) _tryTransfer(asset_, msg.sender, amount, true);
    }

    function _acceptanceHash() internal view returns (bytes32) {
        return keccak256(abi.encode(ACCEPTANCE_TYPEHASH, configHash, vendor));
    }

    function _acceptSigned(bytes32 digest, bytes calldata signature) internal {
        address signer = ECDSA.recover(digest, signature);
        if (signer != customer) revert NotCustomer(signer);
        _accept();
    }

    function _accept() internal {
        uint8 flags = _flags;
        if (flags & CANCELLED != 0) revert AgreementCancelled();
        if (flags & ACCEPTED != 0) revert AlreadyAccepted();
        _flags = flags | ACCEPTED;
        emit Accepted(customer);
    }

    // ================================================================ reports

    /// @inheritdoc IAgreement
    function submitReport(
        bytes calldata cfg,
        uint32 period,
        bytes32 termsHash_,
        bytes32 evidenceRoot,
        bytes calldata attainments,
        bytes calldata signatures
    ) external nonReentrant returns (uint256 credit) {
        return _report(cfg, period, 0, termsHash_, evidenceRoot, attainments, signatures);
    }

    /// @inheritdoc IAgreement
    function submitRevision(
        bytes calldata cfg,
        uint32 period,
        uint32 revision,
        bytes32 termsHash_,
        bytes32 evidenceRoot,
        bytes calldata attainments,
        bytes calldata signatures
    ) external nonReentrant returns (uint256 credit) {
        return _report(cfg, period, revision, termsHash_, evidenceRoot, attainments, signatures);
    }

    /// @dev A signed report: settles at once without a challenge window, else proposes (or revises).
    function _report(
        bytes calldata cfg,
        uint32 period,
        uint32 revision,
        bytes32 termsHash_,
        bytes32 evidenceRoot,
        bytes calldata attainments,
        bytes calldata signatures
    ) internal returns (uint256 credit) {
        // checks
        _checkConfig(cfg);
        ConfigLib.Layout memory l = cfg.layout();
        uint256 window;
        (credit, window) = _measure(cfg, l, period, attainments);
        _checkSigned(cfg, period, revision, termsHash_, evidenceRoot, attainments, signatures);
        if (window != 0) {
            _propose(period, revision, credit, window);
            emit ReportProposed(period, revision, termsHash_, evidenceRoot, attainments, signatures, credit);
            return credit;
        }

        // effects
        nextPeriod = period + 1;
        emit ReportAccepted(period, termsHash_, evidenceRoot, attainments, signatures, credit);

        // interactions (inside _settleCredit / _returnEscrow, after all state is written)
        _payNow(cfg, period, credit, l.boundCount - 1);
    }

    /// @dev Pay a report's credit to the Config's customer; after the last period return the escrow.
    function _payNow(bytes calldata cfg, uint32 period, uint256 credit, uint256 count) internal {
        address asset_ = cfg.readAddress(ConfigLib.ASSET_AT);
        if (credit != 0) _settleCredit(period, credit, cfg.readAddress(ConfigLib.CUSTOMER_AT), asset_);
        if (period + 1 == count) _returnEscrow(asset_); // the last period
    }

    /// @dev The period is due (and, with a challenge window, before its report deadline); returns the
    /// credit and the challenge window.
    function _measure(bytes calldata cfg, ConfigLib.Layout memory l, uint32 period, bytes calldata attainments)
        internal
        view
        returns (uint256 credit, uint256 window)
    {
        uint256 endsAt = _checkPeriod(cfg, l, period);
        uint256 s;
        (credit, s) = CreditLib.creditFor(cfg, l, attainments);
        uint256 deadline;
        (window, deadline) = SettlementLib.windows(cfg, s);
        // with a window, proposals and revisions close at the deadline (so every period is final by
        // deadline + window + arbitration); without one, a late report still settles, as before,
        // unless the period was settled by default first
        if (window != 0 && block.timestamp >= endsAt + deadline) revert ReportDeadlinePassed(period, endsAt + deadline);
    }

    /// @dev Record (or replace, with a higher revision inside the window) the proposal for `period`.
    function _propose(uint32 period, uint32 revision, uint256 credit, uint256 window) internal {
        Proposal storage p = _proposals[period];
        PeriodState state = p.state;
        if (state == PeriodState.Proposed) {
            if (revision <= p.revision) revert StaleRevision(period, revision, p.revision);
            if (block.timestamp >= p.windowEnd) revert ChallengeWindowClosed(period, p.windowEnd);
        } else if (state != PeriodState.None) {
            revert WrongPeriodState(period, uint8(state));
        }
        uint256 windowEnd = block.timestamp + window;
        (p.credit, p.windowEnd, p.revision, p.state) = (uint104(credit), uint40(windowEnd), revision, PeriodState.Proposed);
        if (state == PeriodState.Proposed) emit ReportRevised(period, revision, credit, windowEnd);
    }

    /// @dev The report is for the agreed terms and signed by at least M distinct current oracles.
    function _checkSigned(
        bytes calldata cfg,
        uint32 period,
        uint32 revision,
        bytes32 termsHash_,
        bytes32 evidenceRoot,
        bytes calldata attainments,
        bytes calldata signatures
    ) internal view {
        bytes32 agreed = bytes32(cfg[ConfigLib.TERMS_AT:ConfigLib.TERMS_AT + 32]);
        if (termsHash_ != agreed) revert TermsHashMismatch(agreed, termsHash_);
        SignatureLib.verify(_reportDigest(period, revision, termsHash_, evidenceRoot, attainments), signatures, cfg);
    }

    /// @dev `period` must be the next unsettled one, and over, and the agreement accepted; returns its end.
    function _checkPeriod(bytes calldata cfg, ConfigLib.Layout memory l, uint32 period)
        internal
        view
        returns (uint256 endsAt)
    {
        uint256 next = nextPeriod;
        if (_flags & ACCEPTED == 0) revert NotAccepted();
        if (period != next) {
            if (period < next) revert PeriodAlreadySettled(period);
            revert PeriodOutOfOrder(period, next);
        }
        if (period >= l.boundCount - 1) revert NoSuchPeriod(period); // the Config's periodCount
        endsAt = cfg.readUint(l.bounds + ConfigLib.BOUND_SIZE * (uint256(period) + 1), ConfigLib.BOUND_SIZE);
        if (block.timestamp < endsAt) revert PeriodNotEnded(period, endsAt);
    }

    /// @dev The Config passed in is the one in force.
    function _checkConfig(bytes calldata cfg) internal view {
        bytes32 h = keccak256(cfg);
        if (h != configHash) revert ConfigMismatch(configHash, h);
    }

    /// @inheritdoc IAgreement
    function reportDigest(
        uint32 period,
        uint32 revision,
        bytes32 termsHash_,
        bytes32 evidenceRoot,
        bytes calldata attainments
    ) external view returns (bytes32) {
        return _reportDigest(period, revision, termsHash_, evidenceRoot, attainments);
    }

    function _reportDigest(
        uint32 period,
        uint32 revision,
        bytes32 termsHash_,
        bytes32 evidenceRoot,
        bytes calldata attainments
    ) internal view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(REPORT_TYPEHASH, period, revision, termsHash_, evidenceRoot, keccak256(attainments)))
        );
    }

    /// @inheritdoc IAgreement
    function resolutionDigest(uint32 period, bytes calldata attainments, bytes32 evidenceRoot)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(keccak256(abi.encode(RESOLUTION_TYPEHASH, period, keccak256(attainments), evidenceRoot)));
    }

    /// @inheritdoc IAgreement
    function creditFor(bytes calldata cfg, bytes calldata attainments) external pure returns (uint256 credit) {
        ConfigLib.Layout memory l = cfg.layout();
        cfg.validate(l);
        (credit,) = CreditLib.creditFor(cfg, l, attainments);
    }

    // ================================================================ challenge, dispute, deadline

    /// @inheritdoc IAgreement
    function finalize(uint32 period) external nonReentrant {
        Proposal storage p = _proposals[period];
        // checks
        if (p.state != PeriodState.Proposed) revert WrongPeriodState(period, uint8(p.state));
        if (block.timestamp < p.windowEnd) revert ChallengeWindowOpen(period, p.windowEnd);
        // effects, then the payout
        p.state = PeriodState.Final;
        uint256 credit = p.credit;
        emit ReportFinalized(period, credit);
        _close(period, credit);
    }

    /// @inheritdoc IAgreement
    function dispute(bytes calldata cfg, uint32 period, bytes32 reasonHash) external payable nonReentrant {
        // checks
        _checkConfig(cfg);
        Proposal storage p = _proposals[period];
        if (p.state != PeriodState.Proposed) revert WrongPeriodState(period, uint8(p.state));
        if (block.timestamp >= p.windowEnd) revert ChallengeWindowClosed(period, p.windowEnd);
        SettlementLib.Params memory sp = _params(cfg);
        if (msg.sender != customer) {
            uint256 n = cfg.readUint(sp.auditors, 1);
            if (!SettlementLib.contains(cfg, sp.auditors + 1, n, msg.sender)) revert NotDisputer(msg.sender);
        }
        uint256 bond = _takeBond(sp.bond);
        // effects
        p.state = PeriodState.Disputed;
        p.disputedAt = uint40(block.timestamp);
        _disputes[period] = Dispute(msg.sender, uint96(bond));
        _held += uint104(bond);
        emit Disputed(period, msg.sender, reasonHash, bond);
    }

    /// @inheritdoc IAgreement
    function resolve(
        bytes calldata cfg,
        uint32 period,
        bytes32 evidenceRoot,
        bytes calldata attainments,
        bytes calldata signatures
    ) external nonReentrant returns (uint256 credit) {
        // checks
        _checkConfig(cfg);
        Proposal storage p = _proposals[period];
        if (p.state != PeriodState.Disputed) revert WrongPeriodState(period, uint8(p.state));
        uint256 arbiters;
        (credit, arbiters) = _resolvedCredit(cfg, period, attainments, p.disputedAt);
        SignatureLib.verifySet(resolutionDigest(period, attainments, evidenceRoot), signatures, cfg, arbiters);
        // effects
        bool changed = credit != p.credit;
        p.state = PeriodState.Resolved;
        emit Resolved(period, evidenceRoot, attainments, signatures, credit, changed);
        // interactions: the bond back to a disputer who was right (forfeited to the escrow if not)
        _releaseBond(period, changed);
        _close(period, credit);
    }

    /// @dev Inside the arbitration window: the resolved credit, and where the arbiter set is.
    function _resolvedCredit(bytes calldata cfg, uint32 period, bytes calldata attainments, uint256 disputedAt)
        internal
        view
        returns (uint256 credit, uint256 arbiters)
    {
        uint256 s;
        (credit, s) = CreditLib.creditFor(cfg, cfg.layout(), attainments);
        SettlementLib.Params memory sp = SettlementLib.params(cfg, s);
        uint256 due = disputedAt + sp.arbitration;
        if (block.timestamp >= due) revert ArbitrationWindowClosed(period, due);
        arbiters = sp.arbiters;
    }

    /// @inheritdoc IAgreement
    function settleByDefault(bytes calldata cfg, uint32 period) external nonReentrant returns (uint256 credit) {
        // checks
        _checkConfig(cfg);
        ConfigLib.Layout memory l = cfg.layout();
        uint256 endsAt = _checkPeriod(cfg, l, period);
        SettlementLib.Params memory sp = _params(cfg);
        Proposal storage p = _proposals[period];
        PeriodState state = p.state;
        uint256 due;
        if (state == PeriodState.None) due = endsAt + sp.deadline;
        else if (state == PeriodState.Disputed) due = uint256(p.disputedAt) + sp.arbitration;
        else revert WrongPeriodState(period, uint8(state));
        if (block.timestamp < due) revert DeadlineNotPassed(period, due);
        credit = sp.flags & SettlementLib.FLAG_DEFAULT_MAX != 0 ? maxCreditPerPeriod : 0;
        // effects, then the bond back (the arbiters did not decide) and the payout
        p.state = PeriodState.Defaulted;
        emit SettledByDefault(period, credit);
        if (state == PeriodState.Disputed) _releaseBond(period, true);
        _close(period, credit);
    }

    /// @inheritdoc IAgreement
    function claimRefund() external nonReentrant returns (uint256 amount) {
        // checks
        if (nextPeriod != periodCount && _flags & CANCELLED == 0) revert PeriodsOutstanding(nextPeriod, periodCount);
        amount = withdrawable();
        if (amount == 0) revert ZeroAmount();
        // effects
        address to = vendor;
        emit EscrowReturned(to, amount);
        // interactions
        _transferOrRevert(asset, to, amount);
    }

    /// @inheritdoc IAgreement
    function claimBond() external nonReentrant {
        uint256 amount = bondRefunds[msg.sender];
        if (amount == 0) revert NothingToClaim();
        bondRefunds[msg.sender] = 0;
        _held -= uint104(amount);
        emit BondClaimed(msg.sender, amount);
        _transferOrRevert(asset, msg.sender, amount);
    }

    /// @inheritdoc IAgreement
    function periodState(uint32 period) public view returns (PeriodState) {
        PeriodState state = _proposals[period].state;
        if (period < nextPeriod) return state == PeriodState.None ? PeriodState.Final : state;
        return state;
    }

    /// @inheritdoc IAgreement
    function proposal(uint32 period)
        external
        view
        returns (PeriodState state, uint256 credit, uint32 revision, uint256 windowEnd, uint256 disputedAt)
    {
        Proposal memory p = _proposals[period];
        return (periodState(period), p.credit, p.revision, p.windowEnd, p.disputedAt);
    }

    /// @inheritdoc IAgreement
    function openDispute(uint32 period) external view returns (address disputer, uint256 bond) {
        if (_proposals[period].state != PeriodState.Disputed) return (address(0), 0);
        Dispute memory d = _disputes[period];
        return (d.disputer, d.bond);
    }

    /// @inheritdoc IAgreement
    function accepted() external view returns (bool) {
        return _flags & ACCEPTED != 0;
    }

    /// @inheritdoc IAgreement
    function cancelled() external view returns (bool) {
        return _flags & CANCELLED != 0;
    }

    function _params(bytes calldata cfg) internal pure returns (SettlementLib.Params memory) {
        return SettlementLib.params(cfg, ConfigLib.objectivesEnd(cfg, cfg.layout()));
    }

    /// @dev Pull the dispute bond (ETH: exactly msg.value); returns what arrived.
    function _takeBond(uint256 bond) internal returns (uint256 received) {
        address asset_ = asset;
        if (asset_ == address(0)) {
            if (msg.value != bond) revert DepositMismatch(bond, msg.value);
            return bond;
        }
        if (msg.value != 0) revert DepositMismatch(0, msg.value);
        if (bond == 0) return 0;
        uint256 before = _balanceOf(asset_);
        _safeTransferFrom(asset_, msg.sender, bond);
        received = _balanceOf(asset_) - before;
    }

    /// @dev Return (push, or owe for `claimBond`) or forfeit the period's dispute bond.
    function _releaseBond(uint32 period, bool toDisputer) internal {
        Dispute memory d = _disputes[period];
        delete _disputes[period];
        if (d.bond == 0) return;
        _held -= uint104(d.bond);
        if (!toDisputer) {
            emit BondForfeited(period, d.disputer, d.bond);
            return;
        }
        if (_tryTransfer(asset, d.disputer, d.bond, true)) {
            emit BondReturned(period, d.disputer, d.bond);
        } else {
            _held += uint104(d.bond);
            bondRefunds[d.disputer] += d.bond;
            emit BondOwed(period, d.disputer, d.bond);
        }
    }

    /// @dev `period` is final with `credit`: advance, pay, and after the last period return the escrow.
    function _close(uint32 period, uint256 credit) internal {
        nextPeriod = period + 1;
        address asset_ = asset;
        if (credit != 0) _settleCredit(period, credit, customer, asset_);
        if (period + 1 == periodCount) _returnEscrow(asset_);
    }

    // ================================================================ escrow

    /// @inheritdoc IAgreement
    /// @dev The token is pulled before anything is recorded (the amount credited is what arrived);
    /// `nonReentrant` keeps a hostile token from re-entering in between.
    function deposit(uint256 amount) external payable nonReentrant {
        // checks
        if (amount == 0) revert ZeroAmount();
        address asset_ = asset;
        uint256 received;
        if (asset_ == address(0)) {
            if (msg.value != amount) revert DepositMismatch(amount, msg.value);
            received = amount;
        } else {
            if (msg.value != 0) revert DepositMismatch(0, msg.value);
            uint256 before = _balanceOf(asset_);
            _safeTransferFrom(asset_, msg.sender, amount);
            received = _balanceOf(asset_) - before;
        }
        // effects, then the repayment's push
        emit Deposited(msg.sender, received);
        _repayDebt(asset_);
    }

    /// @inheritdoc IAgreement
    receive() external payable nonReentrant {
        // checks
        if (asset != address(0)) revert DepositMismatch(0, msg.value);
        if (msg.value == 0) revert ZeroAmount();
        // effects, then the repayment's push
        emit Deposited(msg.sender, msg.value);
        _repayDebt(address(0));
    }

    /// @inheritdoc IAgreement
    function repayDebt() external nonReentrant {
        _repayDebt(asset);
    }

    /// @inheritdoc IAgreement
    function withdraw(uint256 amount) external onlyVendor nonReentrant {
        // checks
        if (amount == 0) revert ZeroAmount();
        uint256 available = withdrawable();
        if (amount > available) revert ExceedsWithdrawable(amount, available);
        // effects
        emit Withdrawn(msg.sender, amount);
        // interactions
        _transferOrRevert(asset, msg.sender, amount);
    }

    /// @inheritdoc IAgreement
    function claim(address to) external nonReentrant {
        // checks
        if (msg.sender != customer) revert NotCustomer(msg.sender);
        if (to == address(0)) revert ZeroAddress();
        uint256 amount = _claimable;
        if (amount == 0) revert NothingToClaim();
        // effects
        _claimable = 0;
        _held -= uint104(amount);
        emit Claimed(msg.sender, to, amount);
        // interactions
        _transferOrRevert(asset, to, amount);
    }

    /// @inheritdoc IAgreement
    /// @dev Unsettled periods (a proposal, a dispute or none) each hold the period's maximum credit;
    /// claimable credits, open bonds and bonds owed are in `_held`. A cancelled agreement owes no period.
    function reserve() public view returns (uint256) {
        uint256 open = _flags & CANCELLED != 0 ? 0 : uint256(periodCount) - nextPeriod;
        return open * maxCreditPerPeriod + _debt + _held;
    }

    /// @inheritdoc IAgreement
    function claimable() external view returns (uint128) {
        return _claimable;
    }

    /// @inheritdoc IAgreement
    function debt() external view returns (uint128) {
        return _debt;
    }

    /// @inheritdoc IAgreement
    function held() external view returns (uint256) {
        return _held;
    }

    /// @inheritdoc IAgreement
    function withdrawable() public view returns (uint256) {
        uint256 bal = _balanceOf(asset);
        uint256 r = reserve();
        return bal > r ? bal - r : 0;
    }

    /// @inheritdoc IAgreement
    function escrowBalance() external view returns (uint256) {
        return _balanceOf(asset);
    }

    // ================================================================ oracle rotation

    /// @inheritdoc IAgreement
    function proposeOracleSet(bytes calldata oracleSet) external {
        // checks
        if (msg.sender != vendor && msg.sender != customer) revert NotParty(msg.sender);
        oracleSet.validateOracleSet(0);
        uint256 count = oracleSet.readUint(1, 1);
        if (oracleSet.length != ConfigLib.ORACLE_SET_HEAD + ConfigLib.ADDRESS_SIZE * count) {
            revert InvalidOracleSet();
        }
        // effects
        pendingOracleSetHash = keccak256(oracleSet);
        pendingProposer = msg.sender;
        emit OracleSetProposed(msg.sender, oracleSet);
    }

    /// @inheritdoc IAgreement
    /// @dev `newCfg` must equal `cfg` outside the oracle set, whose bytes must hash to the proposal.
    function acceptOracleSet(bytes calldata cfg, bytes calldata newCfg) external {
        // checks
        address proposer = pendingProposer;
        if (proposer == address(0)) revert NoPendingOracleSet();
        if (msg.sender != vendor && msg.sender != customer) revert NotParty(msg.sender);
        if (msg.sender == proposer) revert ProposerCannotAccept(proposer);
        _checkConfig(cfg);
        uint256 oldEnd = cfg.oraclesEnd();
        uint256 newEnd = newCfg.oraclesEnd();
        if (newCfg.length < newEnd) revert InvalidOracleSet();
        bytes32 proposed = keccak256(newCfg[ConfigLib.THRESHOLD_AT:newEnd]);
        if (proposed != pendingOracleSetHash) revert OracleSetMismatch(pendingOracleSetHash, proposed);
        if (
            keccak256(newCfg[:ConfigLib.THRESHOLD_AT]) != keccak256(cfg[:ConfigLib.THRESHOLD_AT])
                || keccak256(newCfg[newEnd:]) != keccak256(cfg[oldEnd:])
        ) revert ConfigMismatch(configHash, keccak256(newCfg));

        SettlementLib.checkSigners(newCfg, ConfigLib.objectivesEnd(newCfg, newCfg.layout()), vendor, customer);

        // effects
        bytes32 h = keccak256(newCfg);
        configHash = h;
        pendingOracleSetHash = bytes32(0);
        pendingProposer = address(0);
        emit OracleSetChanged(newCfg, h);
    }

    // ================================================================ money movement

    /// @dev Pays what free escrow allows now; the rest becomes debt (recorded before the push).
    function _settleCredit(uint256 period, uint256 credit, address to, address asset_) internal {
        uint256 free = _freeBalance(asset_);
        uint256 pay = credit < free ? credit : free;
        if (credit > pay) {
            uint256 newDebt = uint256(_debt) + (credit - pay);
            _debt = uint104(newDebt);
            emit DebtRecorded(period, credit - pay, newDebt);
        }
        if (pay != 0) _pay(period, to, asset_, pay);
    }

    /// @dev Repays what free escrow allows of the debt (recorded before the push).
    function _repayDebt(address asset_) internal {
        uint256 owed = _debt;
        if (owed == 0) return;
        uint256 free = _freeBalance(asset_);
        uint256 pay = owed < free ? owed : free;
        if (pay == 0) return;
        _debt = uint104(owed - pay);
        emit DebtRepaid(pay, owed - pay);
        _pay(DEBT_PERIOD, customer, asset_, pay);
    }

    /// @dev Push `amount` to the customer; if the push fails, it becomes claimable (never lost).
    /// The one write after an external call is that bookkeeping of a failed push; every caller is
    /// `nonReentrant`.
    function _pay(uint256 period, address to, address asset_, uint256 amount) internal {
        if (_tryTransfer(asset_, to, amount, true)) {
            emit CreditPaid(period, to, amount);
        } else {
            _claimable += uint128(amount);
            _held += uint104(amount);
            emit CreditDeferred(period, to, amount);
        }
    }

    /// @dev After the last period: whatever is not owed to the customer goes back to the vendor.
    function _returnEscrow(address asset_) internal {
        uint256 amount = _freeBalance(asset_);
        if (_debt != 0 || amount == 0) return;
        address to = vendor;
        if (_tryTransfer(asset_, to, amount, true)) emit EscrowReturned(to, amount);
        // else: it stays withdrawable (the reserve is now zero)
    }

    function _balanceOf(address asset_) internal view returns (uint256) {
        return asset_ == address(0) ? address(this).balance : IERC20(asset_).balanceOf(address(this));
    }

    /// @dev Escrow not already set aside for others: the customer's claims, bonds.
    function _freeBalance(address asset_) internal view returns (uint256) {
        uint256 bal = _balanceOf(asset_);
        uint256 h = _held;
        return bal > h ? bal - h : 0;
    }

    function _transferOrRevert(address asset_, address to, uint256 amount) internal {
        if (!_tryTransfer(asset_, to, amount, false)) revert TransferFailed(to, amount);
    }

    /// @dev ETH or ERC-20 transfer that reports failure instead of reverting. A push forwards
    /// bounded gas (ETH) so a hostile receiver cannot block a settlement.
    function _tryTransfer(address asset_, address to, uint256 amount, bool push) internal returns (bool ok) {
        if (asset_ == address(0)) {
            (ok,) = to.call{value: amount, gas: push ? PUSH_GAS : gasleft()}("");
            return ok;
        }
        bytes memory ret;
        (ok, ret) = asset_.call(abi.encodeCall(IERC20.transfer, (to, amount)));
        return ok && _succeeded(asset_, ret);
    }

    function _safeTransferFrom(address token, address from, uint256 amount) internal {
        (bool ok, bytes memory ret) = token.call(abi.encodeCall(IERC20.transferFrom, (from, address(this), amount)));
        if (!(ok && _succeeded(token, ret))) revert TransferFailed(address(this), amount);
    }

    /// @dev A token call succeeded if it returned true, or nothing from a contract (USDT-style).
    function _succeeded(address token, bytes memory ret) internal view returns (bool) {
        return ret.length == 0 ? token.code.length != 0 : (ret.length >= 32 && abi.decode(ret, (bool)));
    }
}
