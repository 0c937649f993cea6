"""The API's adapter to the chain: a read-only view (agreements listed from factory logs, an
agreement's state, its Config in force and its decoded event history, reports and payouts), and the
one write the API makes (creating an agreement through a factory). Every read is cached per block:
the latest block number is re-read at most every `block_poll_s`, and a new block empties the cache."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import requests
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.exceptions import BadFunctionCallOutput, ContractLogicError, Web3Exception
from web3.types import FilterParams

from oracle.chain.abi import contract, event_topic
from oracle.chain.config import (
    CONFIG_EVENTS,
    SCOPES,
    Config,
    ConfigNotFound,
    config_from_terms,
    config_in_force,
    unpack_attainments,
)
from oracle.chain.keystore import load_keystore, read_password
from oracle.chain.report import Report
from oracle.chain.signing import unpack_signatures
from oracle.chain.tx import ChainError, create_agreement
from oracle.core.terms import Terms
from oracle.verify.customer import DEBT_PERIOD, agreement_logs, recover_signers

from ..models import AgreementSummary, Signature

__all__ = ["SCOPES", "AcceptedReport", "AgreementState", "ChainUnavailable", "ChainView", "ConfigNotFound", "Deployed",
           "Event", "FactoryRefused", "PayoutEntry", "UnknownAgreement"]

T = TypeVar("T")
ERC20_ABI = [
    {"type": "function", "name": "decimals", "inputs": [], "outputs": [{"type": "uint8", "name": ""}],
     "stateMutability": "view"},
    {"type": "function", "name": "symbol", "inputs": [], "outputs": [{"type": "string", "name": ""}],
     "stateMutability": "view"},
]


class ChainUnavailable(RuntimeError):
    """The JSON-RPC node cannot be reached (the API answers 503)."""


class UnknownAgreement(LookupError):
    """No agreement at this address (the API answers 404)."""


class FactoryRefused(ValueError):
    """The factory refused to create the agreement (422 naming the body field to blame)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class Deployed:
    """An agreement this service created: its address, customer and the transaction."""

    address: str
    customer: str
    tx_hash: str
    block: int
    gas_used: int


@dataclass(frozen=True)
class Event:
    name: str
    args: dict[str, Any]
    block: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class AcceptedReport:
    """An accepted report as the chain holds it: the signed EIP-712 payload, its digest, the
    signatures with the oracles they recover to, the credit (smallest units) and the event."""

    period: int
    payload: dict[str, Any]
    attainments: list[list[int]]
    digest: str
    signatures: list[Signature]
    credit: int
    tx_hash: str
    block: int
    event: dict[str, Any]


@dataclass(frozen=True)
class PayoutEntry:
    """One payout, claimable (deferred), claim, debt or repayment event; amount in smallest units."""

    kind: Literal["paid", "claimable", "claimed", "debt", "debt_repaid"]
    event: str
    period: int | None
    amount: int
    to: str | None
    tx_hash: str
    block: int
    log_index: int


@dataclass(frozen=True)
class AgreementState:
    address: str
    vendor: str
    customer: str
    config: Config  # the Config in force (AgreementConfigured, then OracleSetChanged)
    terms_hash: str
    asset: str
    asset_symbol: str
    asset_decimals: int | None
    escrow_balance: int
    reserve: int
    withdrawable: int
    claimable: int
    debt: int
    next_period: int
    period_count: int
    created_block: int
    events: tuple[Event, ...]


def _hex(v: Any) -> Any:
    return "0x" + bytes(v).hex() if isinstance(v, (bytes, bytearray)) else v


class ChainView:
    def __init__(self, rpc_url: str, *, factories: tuple[str, ...] = (), from_block: int = 0,
                 block_poll_s: float = 0.5, timeout_s: float = 5.0) -> None:
        self.rpc_url = rpc_url
        # no retries: a node that is down should give a quick 503, not a hung request
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s},
                                         exception_retry_configuration=None))
        self.factories = tuple(to_checksum_address(f) for f in factories)
        self.from_block, self.block_poll_s = from_block, block_poll_s
        self._lock = threading.Lock()
        self._block: int | None = None
        self._block_read = 0.0
        self._cache: dict[Any, Any] = {}
        self._flights: dict[Any, threading.Lock] = {}
        self._assets: dict[str, tuple[str, int | None]] = {}
        self._chain_id: int | None = None

    # ------------------------------------------------------------------ plumbing

    def _rpc(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError, OSError) as exc:
            raise ChainUnavailable(f"chain unreachable at {self.rpc_url} ({what}): {type(exc).__name__}") from None

    def block(self) -> int:
        """The latest block number, re-read at most every `block_poll_s`; a new one clears the cache."""
        now = time.monotonic()
        with self._lock:
            if self._block is not None and now - self._block_read < self.block_poll_s:
                return self._block
        number = int(self._rpc("eth_blockNumber", lambda: self.w3.eth.block_number))
        with self._lock:
            if number != self._block:
                self._cache.clear()
            self._block, self._block_read = number, time.monotonic()
        return number

    def invalidate(self) -> None:
        """Forget everything (after this service sent a transaction)."""
        with self._lock:
            self._cache.clear()
            self._block = None

    def _cached(self, key: Any, fn: Callable[[], T]) -> T:
        """The value for this block; on a miss one thread reads while the others wait for it
        (a new block must not send every waiting request to the node at once)."""
        block = self.block()
        with self._lock:
            hit = self._cache.get(key)
            flight = self._flights.setdefault(key, threading.Lock())
        if hit is not None and hit[0] == block:
            return hit[1]  # type: ignore[no-any-return]
        with flight:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and hit[0] == block:
                return hit[1]  # type: ignore[no-any-return]
            value = fn()
            with self._lock:
                self._cache[key] = (block, value)
            return value

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self._rpc("eth_chainId", lambda: self.w3.eth.chain_id))
        return self._chain_id

    # ------------------------------------------------------------------ reads

    def list_agreements(self, vendor: str | None = None, customer: str | None = None) -> list[AgreementSummary]:
        """Agreements created by the known factories (any emitter when none is configured),
        optionally filtered by the indexed vendor / customer topics."""
        def topic(a: str | None) -> str | None:
            return None if a is None else "0x" + bytes.fromhex(to_checksum_address(a)[2:]).rjust(32, b"\0").hex()

        def fetch() -> list[AgreementSummary]:
            flt: dict[str, Any] = {"fromBlock": self.from_block, "toBlock": "latest",
                                   "topics": [event_topic("AgreementFactory", "AgreementCreated"), topic(vendor),
                                              topic(customer)]}
            if self.factories:
                flt["address"] = list(self.factories)
            logs = self._rpc("eth_getLogs", lambda: self.w3.eth.get_logs(cast(FilterParams, flt)))
            out = []
            for log in logs:
                t = log["topics"]
                if len(t) != 4:
                    continue
                out.append(AgreementSummary(
                    address=to_checksum_address(bytes(t[3])[12:]), vendor=to_checksum_address(bytes(t[1])[12:]),
                    customer=to_checksum_address(bytes(t[2])[12:]), factory=to_checksum_address(log["address"]),
                    terms_hash="0x" + bytes(log["data"])[:32].hex(), block=int(log["blockNumber"]),
                    tx_hash=_hex(log["transactionHash"])))
            return out

        return self._cached(("list", vendor, customer), fetch)

    def agreement(self, address: str) -> AgreementState:
        address = to_checksum_address(address)
        return self._cached(("agreement", address), lambda: self._read_agreement(address))

    def _read_agreement(self, address: str) -> AgreementState:
        code = self._rpc("eth_getCode", lambda: self.w3.eth.get_code(to_checksum_address(address)))
        if not code:
            raise UnknownAgreement(f"no contract at {address}")
        c = contract(self.w3, "Agreement", address)
        raw = self._rpc("eth_getLogs", lambda: agreement_logs(self.w3, c))
        events = tuple(Event(name, args, int(log["blockNumber"]), _hex(log["transactionHash"]), int(log["logIndex"]))
                       for name, args, log in raw)
        configured = [e for e in events if e.name == "AgreementConfigured"]
        if not configured:
            raise UnknownAgreement(f"{address} is not a slacomp agreement (no AgreementConfigured event)")
        blobs = [bytes(e.args["config"]) for e in events if e.name in CONFIG_EVENTS]
        f = c.functions
        try:
            current = bytes(self._rpc("configHash", f.configHash().call))
            config = config_in_force(blobs, current, where=f"agreement {address}")  # no fallback: ConfigNotFound
            values = {name: self._rpc(name, getattr(f, name)().call) for name in (
                "escrowBalance", "reserve", "withdrawable", "claimable", "debt", "nextPeriod", "periodCount")}
        except (BadFunctionCallOutput, ContractLogicError) as exc:
            raise UnknownAgreement(f"{address} does not answer as an agreement: {exc}") from None
        symbol, decimals = self._asset(config.asset)
        first = configured[0]
        return AgreementState(
            address=address, vendor=to_checksum_address(first.args["vendor"]),
            customer=to_checksum_address(first.args["customer"]), config=config,
            terms_hash="0x" + config.terms_hash.hex(), asset=config.asset, asset_symbol=symbol,
            asset_decimals=decimals, escrow_balance=values["escrowBalance"], reserve=values["reserve"],
            withdrawable=values["withdrawable"], claimable=values["claimable"], debt=values["debt"],
            next_period=values["nextPeriod"], period_count=values["periodCount"], created_block=first.block,
            events=events)

    def _asset(self, asset: str) -> tuple[str, int | None]:
        if int(asset, 16) == 0:
            return "ETH", 18
        if asset not in self._assets:
            token = self.w3.eth.contract(address=to_checksum_address(asset), abi=cast(Any, ERC20_ABI))
            try:
                symbol = str(self._rpc("symbol", token.functions.symbol().call))
            except (Web3Exception, ValueError):
                symbol = ""
            try:
                decimals: int | None = int(self._rpc("decimals", token.functions.decimals().call))
            except (Web3Exception, ValueError):
                decimals = None
            self._assets[asset] = (symbol, decimals)
        return self._assets[asset]

    # ------------------------------------------------------------------ derived

    def reports(self, state: AgreementState) -> list[AcceptedReport]:
        """Every accepted report: the signed EIP-712 payload, its digest, the signatures with the
        oracles they recover to, tx hash, block and the decoded event (cached per block)."""
        return self._cached(("reports", state.address, len(state.events)), lambda: self._reports(state))

    def _reports(self, state: AgreementState) -> list[AcceptedReport]:
        out = []
        for e in state.events:
            if e.name != "ReportAccepted":
                continue
            a = e.args
            raw_att, raw_sigs = bytes(a["attainments"]), bytes(a["signatures"])
            try:
                attainments = unpack_attainments(raw_att)
            except ValueError:
                attainments = []
            report = Report(int(a["period"]), bytes(a["termsHash"]), bytes(a["evidenceRoot"]),
                            tuple(map(tuple, attainments)))
            recovered = dict(recover_signers(report, self.chain_id, state.address, raw_sigs))
            out.append(AcceptedReport(
                period=int(a["period"]),
                payload={"period": int(a["period"]), "termsHash": _hex(a["termsHash"]),
                         "evidenceRoot": _hex(a["evidenceRoot"]), "attainments": _hex(raw_att)},
                attainments=attainments,
                digest="0x" + report.digest(self.chain_id, state.address).hex(),
                signatures=[Signature(oracle_index=i, signature="0x" + sig.hex(), signer=recovered.get(i))
                            for i, sig in unpack_signatures(raw_sigs)],
                credit=int(a["credit"]),
                tx_hash=e.tx_hash, block=e.block,
                event={"name": e.name, "args": {k: _hex(v) for k, v in a.items()}},
            ))
        return out

    def payouts(self, state: AgreementState) -> list[PayoutEntry]:
        """Every payout, claimable (deferred), claim, debt and repayment entry in chain order."""
        kinds: dict[str, Any] = {"CreditPaid": "paid", "CreditDeferred": "claimable", "Claimed": "claimed",
                 "DebtRecorded": "debt", "DebtRepaid": "debt_repaid"}
        out = []
        for e in state.events:
            if e.name not in kinds:
                continue
            period = e.args.get("period")
            period = None if period is None or period == DEBT_PERIOD else int(period)
            out.append(PayoutEntry(kinds[e.name], e.name, period, int(e.args["amount"]),
                                   e.args.get("to") or e.args.get("customer"), e.tx_hash, e.block, e.log_index))
        return out

    # ------------------------------------------------------------------ the one write

    def create(self, terms: Terms, *, vendor: str, keystore: Path | None, factory: str, customer: str, asset: str,
               oracles: list[str], threshold: int) -> Deployed:
        """Deploy an agreement under `terms` through `factory`, sent by the vendor's node account
        (or its keystore); FactoryRefused names the field when the factory reverts."""
        config = config_from_terms(terms, customer=customer, asset=asset, oracles=oracles, threshold=threshold)
        sender: Any = vendor
        if keystore is not None:
            sender = load_keystore(keystore, read_password("SLACOMP_KEYSTORE_PASSWORD", None))
        fc = contract(self.w3, "AgreementFactory", factory)
        try:
            agreement, receipt = self._rpc("createAgreement", lambda: create_agreement(self.w3, fc, sender, config))
        except ChainError as exc:
            field = "threshold" if "OracleSet" in exc.error else "terms"
            raise FactoryRefused(field, f"the factory refused the agreement: {exc.error}") from None
        self.invalidate()
        return Deployed(agreement.address, config.customer, "0x" + bytes(receipt["transactionHash"]).hex(),
                       int(receipt["blockNumber"]), int(receipt["gasUsed"]))

