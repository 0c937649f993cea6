// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IAgreement} from "./interfaces/IAgreement.sol";

/// @title Agreement: one SLA between a vendor and a customer, with escrowed credits
/// @notice Guarantees: a period settles at most once, in order, only after it ended, only with M
/// distinct oracle signatures over the EIP-712 report; the credit is computed here from the agreed
/// schedule (never chosen by the oracle) and paid in the same transaction, or left claimable / as debt.
/// @dev Deployed as EIP-1167 clones by AgreementFactory. Only the hash of the packed Config (layout in
/// IAgreement) lives in storage; report and rotation calls pass the Config back in calldata.
contract Agreement is IAgreement, EIP712 {
    uint256 internal constant BPS = 10_000;
    uint8 internal constant SCOPE_ESTATE = 0;
    uint8 internal constant SCOPE_SITE = 1;
    uint8 internal constant SCOPE_DEVICE = 2;
    uint256 internal constant MAX_ORACLES = 32;
    uint256 internal constant SIG_LENGTH = 66; // oracle index (1) | r (32) | s (32) | v (1)
    uint256 internal constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    /// @dev Gas forwarded with an ETH push; a customer that needs more claims instead.
    uint256 internal constant PUSH_GAS = 50_000;
    /// @dev `period` value in CreditPaid/CreditDeferred for repayments of debt.
    uint256 public constant DEBT_PERIOD = type(uint256).max;
    bytes32 public constant REPORT_TYPEHASH =
        keccak256("Report(uint32 period,bytes32 termsHash,bytes32 evidenceRoot,bytes attainments)");

    uint8 internal constant UNINITIALIZED = 0;
    uint8 internal constant IDLE = 1;
    uint8 internal constant ENTERED = 2;

    // Config layout (see IAgreement): fixed offsets, then variable sections.
    uint256 internal constant CUSTOMER_AT = 0;
    uint256 internal constant ASSET_AT = 20;
    uint256 internal constant TERMS_AT = 40;
    uint256 internal constant FEE_AT = 72;
    uint256 internal constant CAP_AT = 84;
    uint256 internal constant THRESHOLD_AT = 86;
    uint256 internal constant ORACLE_COUNT_AT = 87;
    uint256 internal constant ORACLES_AT = 88;

    /// @dev Offsets of a Config's variable sections (computed from its counts).
    struct Layout {
        uint256 bounds; // first bound
        uint256 boundCount;
        uint256 siteFees; // first site fee
        uint256 siteCount;
        uint256 objectives; // first objective
        uint256 objectiveCount;
    }

    // slot 0: read and written by every report
    address public vendor;
    uint32 public nextPeriod;
    uint32 public periodCount;
    uint8 internal _status;
    // slot 1..3: copies of Config fields for views and vendor/customer calls (reports read the Config)
    address public customer;
    uint96 public maxCreditPerPeriod;
    address public asset; // address(0) = native ETH
    bytes32 public termsHash;
    // slot 4..5: read by every report
    bytes32 public configHash;
    uint128 public claimable;
    uint128 public debt;
    // rotation (written only when the oracle set changes)
    bytes32 public pendingOracleSetHash;
    address public pendingProposer;

    constructor() EIP712("slacomp Agreement", "1") {
        _status = IDLE; // the implementation itself can never be initialized
    }

    modifier nonReentrant() {
        if (_status != IDLE) revert Reentrancy();
        _status = ENTERED;
        _;
        _status = IDLE;
    }

    modifier onlyVendor() {
        if (msg.sender != vendor) revert NotVendor(msg.sender);
        _;
    }

    // ================================================================ set-up

    /// @notice Set up a freshly cloned agreement (called once, by the factory, in the clone's creation tx).
    /// @param vendor_ the party escrowing credits
    /// @param cfg the packed Config: parties, asset, terms hash, credit schedule, periods, oracle set
    function initialize(address vendor_, bytes calldata cfg) external {
        if (_status != UNINITIALIZED) revert AlreadyInitialized();
        if (vendor_ == address(0)) revert ZeroAddress();
        Layout memory l = _layout(cfg);
        uint256 maxCredit = _validateConfig(cfg, l);
        address customer_ = _addressAt(cfg, CUSTOMER_AT);
        address asset_ = _addressAt(cfg, ASSET_AT);
        if (customer_ == address(0)) revert ZeroAddress();
        if (asset_ != address(0) && asset_.code.length == 0) revert ZeroAddress();
        bytes32 terms = bytes32(cfg[TERMS_AT:TERMS_AT + 32]);
        bytes32 h = keccak256(cfg);

        vendor = vendor_;
        periodCount = uint32(l.boundCount - 1);
        _status = IDLE;
        customer = customer_;
        maxCreditPerPeriod = uint96(maxCredit);
        if (asset_ != address(0)) asset = asset_;
        termsHash = terms;
        configHash = h;
        emit AgreementConfigured(vendor_, customer_, asset_, terms, h, maxCredit, cfg);
    }

    // ================================================================ reports

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
    ) external nonReentrant returns (uint256 credit) {
        // checks
        _checkConfig(cfg);
        Layout memory l = _layout(cfg);
        _checkPeriod(cfg, l, period);
        _checkSigned(cfg, period, termsHash_, evidenceRoot, attainments, signatures);
        credit = _creditFor(cfg, l, attainments);

        // effects
        nextPeriod = period + 1;
        emit ReportAccepted(period, termsHash_, evidenceRoot, attainments, signatures, credit);

        // interactions (inside _settleCredit / _returnEscrow, after all state is written)
        address asset_ = _addressAt(cfg, ASSET_AT);
        if (credit != 0) _settleCredit(period, credit, _addressAt(cfg, CUSTOMER_AT), asset_);
        if (period + 1 == periodCount) _returnEscrow(asset_);
    }

    /// @dev The report is for the agreed terms and signed by at least M distinct current oracles.
    function _checkSigned(
        bytes calldata cfg,
        uint32 period,
        bytes32 termsHash_,
        bytes32 evidenceRoot,
        bytes calldata attainments,
        bytes calldata signatures
    ) internal view {
        bytes32 agreed = bytes32(cfg[TERMS_AT:TERMS_AT + 32]);
        if (termsHash_ != agreed) revert TermsHashMismatch(agreed, termsHash_);
        _verifySignatures(reportDigest(period, termsHash_, evidenceRoot, attainments), signatures, cfg);
    }

    /// @dev `period` must be the next unsettled one, and over.
    function _checkPeriod(bytes calldata cfg, Layout memory l, uint32 period) internal view {
        uint256 next = nextPeriod;
        if (period != next) {
            if (period < next) revert PeriodAlreadySettled(period);
            revert PeriodOutOfOrder(period, next);
        }
        if (period >= periodCount) revert NoSuchPeriod(period);
        uint256 endsAt = _read(cfg, l.bounds + 5 * (uint256(period) + 1), 5);
        if (block.timestamp < endsAt) revert PeriodNotEnded(period, endsAt);
    }

    /// @notice The EIP-712 digest the oracles sign for a report.
    /// @param period zero-based period index
    /// @param termsHash_ the terms hash the report is for
    /// @param evidenceRoot commitment to the evidence
    /// @param attainments packed attainments (see `submitReport`)
    /// @return the typed-data digest under this agreement's domain (chain id and address)
    function reportDigest(
        uint32 period,
        bytes32 termsHash_,
        bytes32 evidenceRoot,
        bytes calldata attainments
    ) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(REPORT_TYPEHASH, period, termsHash_, evidenceRoot, keccak256(attainments)))
        );
    }

    /// @notice The credit the schedule gives for `attainments` (capped), as `submitReport` computes it.
    /// @param cfg a packed Config (validated, not checked against this agreement: a pure calculator)
    /// @param attainments packed attainments (see `submitReport`)
    /// @return credit amount in the asset's smallest unit
    function creditFor(bytes calldata cfg, bytes calldata attainments) external pure returns (uint256) {
        Layout memory l = _layout(cfg);
        _validateConfig(cfg, l);
        return _creditFor(cfg, l, attainments);
    }

    // ================================================================ escrow

    /// @notice Add to the escrow. Anyone may deposit; outstanding debt is repaid first.
    /// @dev For ETH send `amount` as msg.value; for an ERC-20, approve first. Fee-on-transfer
    /// tokens are credited with what actually arrived.
    /// @param amount the amount to deposit
    function deposit(uint256 amount) external payable nonReentrant {
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
        emit Deposited(msg.sender, received);
        _repayDebt(asset_);
    }

    /// @notice Plain ETH transfers to an ETH agreement are deposits.
    receive() external payable nonReentrant {
        if (asset != address(0)) revert DepositMismatch(0, msg.value);
        if (msg.value == 0) revert ZeroAmount();
        emit Deposited(msg.sender, msg.value);
        _repayDebt(address(0));
    }

    /// @notice Repay debt from free escrow (e.g. after tokens were sent without `deposit`). Anyone may call.
    function repayDebt() external nonReentrant {
        _repayDebt(asset);
    }

    /// @notice Vendor withdraws escrow above the customer's reserve.
    /// @param amount the amount to withdraw; at most `withdrawable()`
    function withdraw(uint256 amount) external onlyVendor nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 available = withdrawable();
        if (amount > available) revert ExceedsWithdrawable(amount, available);
        emit Withdrawn(msg.sender, amount);
        _transferOrRevert(asset, msg.sender, amount);
    }

    /// @notice Customer collects credits whose push failed.
    /// @param to where to send them
    function claim(address to) external nonReentrant {
        if (msg.sender != customer) revert NotCustomer(msg.sender);
        if (to == address(0)) revert ZeroAddress();
        uint256 amount = claimable;
        if (amount == 0) revert NothingToClaim();
        claimable = 0;
        emit Claimed(msg.sender, to, amount);
        _transferOrRevert(asset, to, amount);
    }

    /// @notice The escrow the customer is protected by: maximum credit of every unsettled period,
    /// plus unpaid debt and unclaimed credits.
    /// @return the reserve in the asset's smallest unit
    function reserve() public view returns (uint256) {
        return (uint256(periodCount) - nextPeriod) * maxCreditPerPeriod + debt + claimable;
    }

    /// @notice What the vendor may withdraw now: the escrow balance above `reserve()`.
    /// @return the withdrawable amount
    function withdrawable() public view returns (uint256) {
        uint256 bal = _balanceOf(asset);
        uint256 r = reserve();
        return bal > r ? bal - r : 0;
    }

    /// @notice Escrow balance (claimable credits included).
    /// @return the balance in the asset's smallest unit
    function escrowBalance() external view returns (uint256) {
        return _balanceOf(asset);
    }

    // ================================================================ oracle rotation

    /// @notice Propose a new oracle set; it takes effect when the other party accepts it.
    /// @param oracleSet threshold (1) | count (1) | oracles (20 each, strictly ascending)
    function proposeOracleSet(bytes calldata oracleSet) external {
        if (msg.sender != vendor && msg.sender != customer) revert NotParty(msg.sender);
        _validateOracleSet(oracleSet, 0);
        if (oracleSet.length != 2 + 20 * uint256(uint8(oracleSet[1]))) revert InvalidOracleSet();
        pendingOracleSetHash = keccak256(oracleSet);
        pendingProposer = msg.sender;
        emit OracleSetProposed(msg.sender, oracleSet);
    }

    /// @notice Accept the other party's proposal; the oracle set and threshold change at once.
    /// @param cfg the current packed Config (must hash to `configHash`)
    /// @param newCfg the same Config with the proposed oracle set in place of the current one
    function acceptOracleSet(bytes calldata cfg, bytes calldata newCfg) external {
        address proposer = pendingProposer;
        if (proposer == address(0)) revert NoPendingOracleSet();
        if (msg.sender != vendor && msg.sender != customer) revert NotParty(msg.sender);
        if (msg.sender == proposer) revert ProposerCannotAccept(proposer);
        _checkConfig(cfg);
        uint256 oldEnd = ORACLES_AT + 20 * _read(cfg, ORACLE_COUNT_AT, 1);
        uint256 newEnd = ORACLES_AT + 20 * _read(newCfg, ORACLE_COUNT_AT, 1);
        if (newCfg.length < newEnd) revert InvalidOracleSet();
        bytes32 proposed = keccak256(newCfg[THRESHOLD_AT:newEnd]);
        if (proposed != pendingOracleSetHash) revert OracleSetMismatch(pendingOracleSetHash, proposed);
        // everything but the oracle set must be unchanged
        if (
            keccak256(newCfg[:THRESHOLD_AT]) != keccak256(cfg[:THRESHOLD_AT])
                || keccak256(newCfg[newEnd:]) != keccak256(cfg[oldEnd:])
        ) revert ConfigMismatch(configHash, keccak256(newCfg));

        bytes32 h = keccak256(newCfg);
        configHash = h;
        pendingOracleSetHash = bytes32(0);
        pendingProposer = address(0);
        emit OracleSetChanged(newCfg, h);
    }

    // ================================================================ config parsing

    /// @dev Big-endian unsigned integer of `size` bytes at `off`. No bounds check: callers only
    /// read a Config whose length was validated, or fail the final length check.
    function _read(bytes calldata b, uint256 off, uint256 size) internal pure returns (uint256 v) {
        assembly ("memory-safe") {
            v := shr(sub(256, shl(3, size)), calldataload(add(b.offset, off)))
        }
    }

    function _addressAt(bytes calldata b, uint256 off) internal pure returns (address) {
        return address(uint160(_read(b, off, 20)));
    }

    function _layout(bytes calldata cfg) internal pure returns (Layout memory l) {
        uint256 off = ORACLES_AT + 20 * _read(cfg, ORACLE_COUNT_AT, 1);
        l.boundCount = _read(cfg, off, 2);
        l.bounds = off + 2;
        off = l.bounds + 5 * l.boundCount;
        l.siteCount = _read(cfg, off, 2);
        l.siteFees = off + 2;
        off = l.siteFees + 12 * l.siteCount;
        l.objectiveCount = _read(cfg, off, 1);
        l.objectives = off + 1;
    }

    function _checkConfig(bytes calldata cfg) internal view {
        bytes32 h = keccak256(cfg);
        if (h != configHash) revert ConfigMismatch(configHash, h);
    }

    /// @dev Validates a whole Config; returns the most a single period can cost (≤ the cap).
    function _validateConfig(bytes calldata cfg, Layout memory l) internal pure returns (uint256 maxCredit) {
        uint256 monthlyFee = _read(cfg, FEE_AT, 12);
        uint256 capBps = _read(cfg, CAP_AT, 2);
        if (monthlyFee == 0) revert InvalidConfig(1);
        if (capBps > BPS) revert InvalidConfig(2);
        _validateOracleSet(cfg, THRESHOLD_AT);
        if (l.boundCount < 2) revert InvalidConfig(3);
        for (uint256 i = 1; i < l.boundCount; ++i) {
            if (_read(cfg, l.bounds + 5 * i, 5) <= _read(cfg, l.bounds + 5 * (i - 1), 5)) revert InvalidConfig(4);
        }
        if (l.objectiveCount == 0) revert InvalidConfig(5);
        bool unbounded;
        uint256 off = l.objectives;
        for (uint256 o = 0; o < l.objectiveCount; ++o) {
            (uint256 worst, bool open, uint256 next) = _objectiveMaxCredit(cfg, l, off, monthlyFee);
            maxCredit += worst;
            unbounded = unbounded || open;
            off = next;
        }
        if (off != cfg.length) revert ConfigLength(off, cfg.length);
        uint256 cap = monthlyFee * capBps / BPS;
        if (unbounded || maxCredit > cap) maxCredit = cap;
    }

    /// @dev Validates the objective at `off`; returns its worst-case credit (or `unbounded` for
    /// per-device scope, whose subject count is attested per period) and where the next one starts.
    function _objectiveMaxCredit(bytes calldata cfg, Layout memory l, uint256 off, uint256 monthlyFee)
        internal
        pure
        returns (uint256 worst, bool unbounded, uint256 next)
    {
        uint256 scope = _read(cfg, off, 1);
        uint256 nTiers = _read(cfg, off + 13, 1);
        uint256 rate = _validateTiers(cfg, off + 14, nTiers);
        next = off + 14 + 4 * nTiers;
        if (scope == SCOPE_ESTATE) {
            worst = monthlyFee * rate / BPS;
        } else if (scope == SCOPE_SITE) {
            if (l.siteCount == 0) revert InvalidConfig(8);
            for (uint256 s = 0; s < l.siteCount; ++s) {
                worst += _read(cfg, l.siteFees + 12 * s, 12) * rate / BPS;
            }
        } else if (scope == SCOPE_DEVICE) {
            unbounded = true;
        } else {
            revert InvalidConfig(9);
        }
    }

    /// @dev Tiers: belowBps in 1..BPS strictly descending, creditBps ≤ BPS non-decreasing; returns the last rate.
    function _validateTiers(bytes calldata cfg, uint256 off, uint256 n) internal pure returns (uint256 rate) {
        if (n == 0) revert InvalidConfig(6);
        uint256 prevBelow = BPS + 1;
        for (uint256 t = 0; t < n; ++t) {
            uint256 below = _read(cfg, off + 4 * t, 2);
            uint256 next = _read(cfg, off + 4 * t + 2, 2);
            if (below == 0 || below >= prevBelow || next > BPS || next < rate) revert InvalidConfig(7);
            (prevBelow, rate) = (below, next);
        }
    }

    /// @dev Oracle set at `off`: threshold (1) | count (1) | oracles (20 each), 1 ≤ M ≤ N ≤ 32, ascending.
    function _validateOracleSet(bytes calldata b, uint256 off) internal pure {
        uint256 threshold = _read(b, off, 1);
        uint256 n = _read(b, off + 1, 1);
        if (n == 0 || n > MAX_ORACLES || threshold == 0 || threshold > n || b.length < off + 2 + 20 * n) {
            revert InvalidOracleSet();
        }
        uint256 prev = 0;
        for (uint256 i = 0; i < n; ++i) {
            uint256 oracle = _read(b, off + 2 + 20 * i, 20);
            if (oracle <= prev) revert InvalidOracleSet(); // ascending: no zero address, no duplicates
            prev = oracle;
        }
    }

    // ================================================================ signatures and credit

    /// @dev Every entry must be a valid low-s signature by the oracle at its index; indexes strictly
    /// ascending (so each oracle counts once); at least `threshold` entries.
    function _verifySignatures(bytes32 digest, bytes calldata signatures, bytes calldata cfg) internal pure {
        uint256 len = signatures.length;
        if (len == 0 || len % SIG_LENGTH != 0) revert MalformedSignatures(len);
        uint256 n = len / SIG_LENGTH;
        uint256 threshold = _read(cfg, THRESHOLD_AT, 1);
        if (n < threshold) revert InsufficientSignatures(n, threshold);
        uint256 oracleCount = _read(cfg, ORACLE_COUNT_AT, 1);
        uint256 prevIndex;
        for (uint256 i = 0; i < n; ++i) {
            (uint256 index, address signer) = _recoverAt(digest, signatures, i);
            if ((i != 0 && index <= prevIndex) || index >= oracleCount) revert SignatureOrder(i);
            if (signer != _addressAt(cfg, ORACLES_AT + 20 * index)) revert NotAnOracle(i, signer);
            prevIndex = index;
        }
    }

    /// @dev Oracle index and recovered signer of the i-th 66-byte signature entry.
    function _recoverAt(bytes32 digest, bytes calldata signatures, uint256 i)
        internal
        pure
        returns (uint256 index, address signer)
    {
        bytes32 r;
        bytes32 s;
        uint8 v;
        uint256 at = i * SIG_LENGTH;
        assembly ("memory-safe") {
            let p := add(signatures.offset, at)
            index := byte(0, calldataload(p))
            r := calldataload(add(p, 1))
            s := calldataload(add(p, 33))
            v := byte(0, calldataload(add(p, 65)))
        }
        if (uint256(s) > HALF_N) revert HighSSignature(i);
        ECDSA.RecoverError err;
        (signer, err,) = ECDSA.tryRecover(digest, v, r, s);
        if (err != ECDSA.RecoverError.NoError) revert InvalidSignature(i);
    }

    /// @dev Mirrors oracle/credit.py: per subject floor(fee * rate / BPS), summed, capped.
    function _creditFor(bytes calldata cfg, Layout memory l, bytes calldata att) internal pure returns (uint256 total) {
        uint256 off = 0; // in att
        uint256 obj = l.objectives; // in cfg
        for (uint256 o = 0; o < l.objectiveCount; ++o) {
            uint256 credit;
            (credit, off) = _objectiveCredit(cfg, l, obj, att, off);
            total += credit;
            obj += 14 + 4 * _read(cfg, obj + 13, 1);
        }
        if (off != att.length) revert MalformedAttainments(off);
        uint256 cap = _read(cfg, FEE_AT, 12) * _read(cfg, CAP_AT, 2) / BPS;
        if (total > cap) total = cap;
    }

    /// @dev Credit of the objective at `obj` (in cfg) whose attainments start at `off` (in att);
    /// returns where they end.
    function _objectiveCredit(bytes calldata cfg, Layout memory l, uint256 obj, bytes calldata att, uint256 off)
        internal
        pure
        returns (uint256 credit, uint256 end)
    {
        if (off + 2 > att.length) revert MalformedAttainments(off);
        uint256 subjects = _read(att, off, 2);
        end = off + 2 + 2 * subjects;
        if (end > att.length) revert MalformedAttainments(off);
        uint256 scope = _read(cfg, obj, 1);
        if (scope == SCOPE_ESTATE ? subjects != 1 : scope == SCOPE_SITE && subjects != l.siteCount) {
            revert MalformedAttainments(off);
        }
        for (uint256 s = 0; s < subjects; ++s) {
            uint256 bps = _read(att, off + 2 + 2 * s, 2);
            if (bps > BPS) revert AttainmentOutOfRange(off + 2 + 2 * s, bps);
            credit += _subjectCredit(cfg, l, obj, s, bps);
        }
    }

    /// @dev floor(fee * rate / BPS) for subject `s` of the objective at `obj` with attainment `bps`.
    function _subjectCredit(bytes calldata cfg, Layout memory l, uint256 obj, uint256 s, uint256 bps)
        internal
        pure
        returns (uint256)
    {
        uint256 rate = _tierRate(cfg, obj + 14, _read(cfg, obj + 13, 1), bps);
        if (rate == 0) return 0;
        uint256 scope = _read(cfg, obj, 1);
        uint256 feeAt = scope == SCOPE_ESTATE ? FEE_AT : (scope == SCOPE_SITE ? l.siteFees + 12 * s : obj + 1);
        return _read(cfg, feeAt, 12) * rate / BPS;
    }

    /// @dev Rate of the most severe tier whose belowBps is above `bps` (tiers: belowBps descending).
    function _tierRate(bytes calldata cfg, uint256 off, uint256 n, uint256 bps) internal pure returns (uint256 rate) {
        for (uint256 t = 0; t < n; ++t) {
            uint256 packed = _read(cfg, off + 4 * t, 4);
            if (bps >= packed >> 16) break;
            rate = packed & 0xffff;
        }
    }

    // ================================================================ money movement

    /// @dev Pays what free escrow allows now; the rest becomes debt.
    function _settleCredit(uint256 period, uint256 credit, address to, address asset_) internal {
        uint256 free = _freeBalance(asset_);
        uint256 pay = credit < free ? credit : free;
        if (credit > pay) {
            uint256 newDebt = uint256(debt) + (credit - pay);
            debt = uint128(newDebt);
            emit DebtRecorded(period, credit - pay, newDebt);
        }
        if (pay != 0) _pay(period, to, asset_, pay);
    }

    function _repayDebt(address asset_) internal {
        uint256 owed = debt;
        if (owed == 0) return;
        uint256 free = _freeBalance(asset_);
        uint256 pay = owed < free ? owed : free;
        if (pay == 0) return;
        debt = uint128(owed - pay);
        emit DebtRepaid(pay, owed - pay);
        _pay(DEBT_PERIOD, customer, asset_, pay);
    }

    /// @dev Push `amount` to the customer; if the push fails, it becomes claimable (never lost).
    function _pay(uint256 period, address to, address asset_, uint256 amount) internal {
        if (_tryTransfer(asset_, to, amount, true)) {
            emit CreditPaid(period, to, amount);
        } else {
            claimable += uint128(amount);
            emit CreditDeferred(period, to, amount);
        }
    }

    /// @dev After the last period: whatever is not owed to the customer goes back to the vendor.
    function _returnEscrow(address asset_) internal {
        uint256 amount = _freeBalance(asset_);
        if (debt != 0 || amount == 0) return;
        address to = vendor;
        if (_tryTransfer(asset_, to, amount, true)) emit EscrowReturned(to, amount);
        // else: it stays withdrawable (the reserve is now zero)
    }

    function _balanceOf(address asset_) internal view returns (uint256) {
        return asset_ == address(0) ? address(this).balance : IERC20(asset_).balanceOf(address(this));
    }

    /// @dev Escrow not already set aside for the customer's claims.
    function _freeBalance(address asset_) internal view returns (uint256) {
        uint256 bal = _balanceOf(asset_);
        uint256 held = claimable;
        return bal > held ? bal - held : 0;
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
        return ok && (ret.length == 0 ? asset_.code.length != 0 : (ret.length >= 32 && abi.decode(ret, (bool))));
    }

    function _safeTransferFrom(address token, address from, uint256 amount) internal {
        (bool ok, bytes memory ret) = token.call(abi.encodeCall(IERC20.transferFrom, (from, address(this), amount)));
        if (!(ok && (ret.length == 0 ? token.code.length != 0 : (ret.length >= 32 && abi.decode(ret, (bool)))))) {
            revert TransferFailed(address(this), amount);
        }
    }
}
