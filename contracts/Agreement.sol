// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IAgreement} from "./interfaces/IAgreement.sol";
import {ConfigLib} from "./libraries/ConfigLib.sol";
import {CreditLib} from "./libraries/CreditLib.sol";
import {SignatureLib} from "./libraries/SignatureLib.sol";

/// @title Agreement: one SLA between a vendor and a customer, with escrowed credits
/// @notice Guarantees: a period settles at most once, in order, only after it ended, only with M
/// distinct oracle signatures over the EIP-712 report; the credit is computed here from the agreed
/// schedule (never chosen by the oracle) and paid in the same transaction, or left claimable / as debt.
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
    bytes32 public constant REPORT_TYPEHASH =
        keccak256("Report(uint32 period,bytes32 termsHash,bytes32 evidenceRoot,bytes attainments)");

    // Storage after the inherited ReentrancyGuard status and EIP712 name/version fallbacks.
    // nextPeriod: read and written by every report
    address public vendor;
    uint32 public nextPeriod;
    uint32 public periodCount;
    // copies of Config fields for views and vendor/customer calls (reports read the Config)
    address public customer;
    uint96 public maxCreditPerPeriod;
    address public asset; // address(0) = native ETH
    bytes32 public termsHash;
    // configHash: read by every report; claimable and debt: by every report that pays
    bytes32 public configHash;
    uint128 public claimable;
    uint128 public debt;
    // rotation (written only when the oracle set changes)
    bytes32 public pendingOracleSetHash;
    address public pendingProposer;

    /// @dev The implementation itself can never be initialized; only its clones are.
    constructor() EIP712("slacomp Agreement", "1") {
        _disableInitializers();
    }

    modifier onlyVendor() {
        if (msg.sender != vendor) revert NotVendor(msg.sender);
        _;
    }

    // ================================================================ set-up

    /// @inheritdoc IAgreement
    function initialize(address vendor_, bytes calldata cfg) external initializer {
        _setUp(vendor_, cfg);
    }

    /// @dev The body of `initialize` (apart, as the `initializer` modifier's locals fill the stack).
    function _setUp(address vendor_, bytes calldata cfg) private {
        // checks
        if (vendor_ == address(0)) revert ZeroAddress();
        ConfigLib.Layout memory l = cfg.layout();
        uint256 maxCredit = cfg.validate(l);
        address customer_ = cfg.readAddress(ConfigLib.CUSTOMER_AT);
        address asset_ = cfg.readAddress(ConfigLib.ASSET_AT);
        if (customer_ == address(0)) revert ZeroAddress();
        if (asset_ != address(0) && asset_.code.length == 0) revert AssetHasNoCode(asset_);
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
        // checks
        _checkConfig(cfg);
        ConfigLib.Layout memory l = cfg.layout();
        _checkPeriod(cfg, l, period);
        _checkSigned(cfg, period, termsHash_, evidenceRoot, attainments, signatures);
        credit = CreditLib.creditFor(cfg, l, attainments);

        // effects
        nextPeriod = period + 1;
        emit ReportAccepted(period, termsHash_, evidenceRoot, attainments, signatures, credit);

        // interactions (inside _settleCredit / _returnEscrow, after all state is written)
        address asset_ = cfg.readAddress(ConfigLib.ASSET_AT);
        if (credit != 0) _settleCredit(period, credit, ConfigLib.readAddress(cfg, ConfigLib.CUSTOMER_AT), asset_);
        if (period + 1 == l.boundCount - 1) _returnEscrow(asset_); // the last period
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
        bytes32 agreed = bytes32(cfg[ConfigLib.TERMS_AT:ConfigLib.TERMS_AT + 32]);
        if (termsHash_ != agreed) revert TermsHashMismatch(agreed, termsHash_);
        SignatureLib.verify(reportDigest(period, termsHash_, evidenceRoot, attainments), signatures, cfg);
    }

    /// @dev `period` must be the next unsettled one, and over.
    function _checkPeriod(bytes calldata cfg, ConfigLib.Layout memory l, uint32 period) internal view {
        uint256 next = nextPeriod;
        if (period != next) {
            if (period < next) revert PeriodAlreadySettled(period);
            revert PeriodOutOfOrder(period, next);
        }
        if (period >= l.boundCount - 1) revert NoSuchPeriod(period); // the Config's periodCount
        uint256 endsAt = cfg.readUint(l.bounds + ConfigLib.BOUND_SIZE * (uint256(period) + 1), ConfigLib.BOUND_SIZE);
        if (block.timestamp < endsAt) revert PeriodNotEnded(period, endsAt);
    }

    /// @dev The Config passed in is the one in force.
    function _checkConfig(bytes calldata cfg) internal view {
        bytes32 h = keccak256(cfg);
        if (h != configHash) revert ConfigMismatch(configHash, h);
    }

    /// @inheritdoc IAgreement
    function reportDigest(uint32 period, bytes32 termsHash_, bytes32 evidenceRoot, bytes calldata attainments)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(
            keccak256(abi.encode(REPORT_TYPEHASH, period, termsHash_, evidenceRoot, keccak256(attainments)))
        );
    }

    /// @inheritdoc IAgreement
    function creditFor(bytes calldata cfg, bytes calldata attainments) external pure returns (uint256) {
        ConfigLib.Layout memory l = cfg.layout();
        cfg.validate(l);
        return CreditLib.creditFor(cfg, l, attainments);
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
        uint256 amount = claimable;
        if (amount == 0) revert NothingToClaim();
        // effects
        claimable = 0;
        emit Claimed(msg.sender, to, amount);
        // interactions
        _transferOrRevert(asset, to, amount);
    }

    /// @inheritdoc IAgreement
    function reserve() public view returns (uint256) {
        return (uint256(periodCount) - nextPeriod) * maxCreditPerPeriod + debt + claimable;
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
            uint256 newDebt = uint256(debt) + (credit - pay);
            debt = uint128(newDebt);
            emit DebtRecorded(period, credit - pay, newDebt);
        }
        if (pay != 0) _pay(period, to, asset_, pay);
    }

    /// @dev Repays what free escrow allows of the debt (recorded before the push).
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
    /// The one write after an external call is that bookkeeping of a failed push; every caller is
    /// `nonReentrant`.
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
