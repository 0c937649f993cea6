"""The agreement's settlement flows beyond an immediate report: the customer's acceptance, the
vendor's cancellation, proposals and revisions inside a challenge window, disputes, the arbiters'
resolutions, finalisation, default settlement after a deadline, the vendor's refund, and the
state of a period as the contract sees it."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from oracle.chain.abi import contract
from oracle.chain.config import Config
from oracle.chain.messages import Resolution
from oracle.chain.report import Report
from oracle.chain.tx import Sender, submit_report, transact

ZERO_ADDRESS = "0x" + "00" * 20


class PeriodState(IntEnum):
    """IAgreement.PeriodState, in its order."""

    NONE = 0
    PROPOSED = 1
    DISPUTED = 2
    RESOLVED = 3
    FINAL = 4
    DEFAULTED = 5


@dataclass(frozen=True)
class PeriodStatus:
    """A period as the contract holds it: its state, the proposal and the open dispute (if any)."""

    period: int
    state: PeriodState
    credit: int  # proposed credit (0 without a proposal)
    revision: int
    window_end: int  # unix seconds; 0 without a proposal
    disputed_at: int  # unix seconds; 0 when not disputed
    disputer: str | None
    bond: int


def accept(w3: Web3, agreement: Contract, customer: Sender) -> TxReceipt:
    """The customer accepts the agreement: from now on its periods may settle."""
    return transact(w3, agreement.functions.accept(), customer, "accept")


def accept_with_signature(w3: Web3, agreement: Contract, signature: bytes, sender: Sender) -> TxReceipt:
    """Relay the customer's signed acceptance (signing.sign_acceptance(..., agreement=...))."""
    return transact(w3, agreement.functions.acceptWithSignature(signature), sender, "acceptWithSignature")


def cancel(w3: Web3, agreement: Contract, vendor: Sender) -> TxReceipt:
    """Before the customer accepts, the vendor cancels and gets the escrow back."""
    return transact(w3, agreement.functions.cancel(), vendor, "cancel")


propose = submit_report  # with a challenge window, a report (revision 0) proposes


def revise(w3: Web3, agreement: Contract, config: Config, report: Report, signatures: bytes,
           sender: Sender) -> TxReceipt:
    """Submit a report of any revision: proposes, or replaces a lower-revision proposal in its window."""
    call = agreement.functions.submitRevision(config.encoded(), report.period, report.revision, report.terms_hash,
                                              report.evidence_root, report.packed_attainments, signatures)
    return transact(w3, call, sender, f"submitRevision(period {report.period}, revision {report.revision})")


def dispute(w3: Web3, agreement: Contract, config: Config, period: int, reason_hash: bytes,
            sender: Sender) -> TxReceipt:
    """Dispute the proposal for `period`, posting the Config's bond (approving the token first)."""
    bond = config.settlement_or_default.dispute_bond
    call = agreement.functions.dispute(config.encoded(), period, reason_hash)
    if int(config.asset, 16) == 0:
        return transact(w3, call, sender, f"dispute(period {period})", value=bond)
    if bond:
        token = contract(w3, "TestToken", config.asset)  # any ERC-20: only approve() is used
        transact(w3, token.functions.approve(agreement.address, bond), sender, "approve")
    return transact(w3, call, sender, f"dispute(period {period})")


def resolve(w3: Web3, agreement: Contract, config: Config, resolution: Resolution, signatures: bytes,
            sender: Sender) -> TxReceipt:
    """Settle a disputed period with the arbiters' signed resolution."""
    call = agreement.functions.resolve(config.encoded(), resolution.period, resolution.evidence_root,
                                       resolution.packed_attainments, signatures)
    return transact(w3, call, sender, f"resolve(period {resolution.period})")


def finalize(w3: Web3, agreement: Contract, period: int, sender: Sender) -> TxReceipt:
    """Pay a proposal whose challenge window passed undisputed."""
    return transact(w3, agreement.functions.finalize(period), sender, f"finalize(period {period})")


def finalize_many(w3: Web3, factory: Contract, items: Sequence[tuple[str, int]], sender: Sender) -> TxReceipt:
    """Finalise (agreement, period) pairs in one transaction; entries that cannot be are skipped
    (the factory logs FinalizeSkipped for each). One pair is the singular case."""
    call = factory.functions.finalizeMany([Web3.to_checksum_address(a) for a, _ in items], [p for _, p in items])
    return transact(w3, call, sender, f"finalizeMany({len(items)})")


def settle_by_default(w3: Web3, agreement: Contract, config: Config, period: int, sender: Sender) -> TxReceipt:
    """After the report deadline (or an unresolved dispute's arbitration window): the default credit."""
    call = agreement.functions.settleByDefault(config.encoded(), period)
    return transact(w3, call, sender, f"settleByDefault(period {period})")


def claim_refund(w3: Web3, agreement: Contract, sender: Sender) -> TxReceipt:
    """After the last period: the escrow above what the customer is due goes back to the vendor."""
    return transact(w3, agreement.functions.claimRefund(), sender, "claimRefund")


def period_status(agreement: Contract, period: int) -> PeriodStatus:
    """Read `proposal(period)` and `openDispute(period)`."""
    state, credit, revision, window_end, disputed_at = agreement.functions.proposal(period).call()
    disputer, bond = agreement.functions.openDispute(period).call()
    return PeriodStatus(period, PeriodState(state), int(credit), int(revision), int(window_end), int(disputed_at),
                        None if int(disputer, 16) == 0 else Web3.to_checksum_address(disputer), int(bond))


def period_state(agreement: Contract, period: int) -> PeriodState:
    return PeriodState(agreement.functions.periodState(period).call())
