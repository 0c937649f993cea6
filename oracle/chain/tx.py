"""Transactions and JSON-RPC: the lean batched `Rpc` of the oracle's hot path, deploying, sending
a contract call (reverts decoded to our custom errors), and the agreement's flows (create, deposit,
submit a report, read a receipt's events)."""
from __future__ import annotations

import itertools
import json
from typing import Any

import requests
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD
from web3.types import TxReceipt

from oracle.chain.abi import contract, decode_error, load_artifact
from oracle.chain.config import Config
from oracle.chain.report import Report
from oracle.core.addresses import checksum


class RpcError(Exception):
    """A JSON-RPC error answer (e.g. an execution revert, with its revert data)."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        self.method, self.code = method, error.get("code")
        self.message = str(error.get("message", "")) or "error without message"
        data = error.get("data")
        if isinstance(data, dict):  # some nodes nest it
            data = data.get("data")
        self.data = data if isinstance(data, str) else None
        super().__init__(f"{method}: {self.message}")

    @property
    def is_revert(self) -> bool:
        return self.data is not None or "revert" in self.message.lower()

    def revert_text(self) -> str:
        if self.data and self.data not in ("0x", ""):
            return decode_error(self.data)
        return self.message


class Rpc:
    """JSON-RPC without web3's middleware: `batch` sends many requests in one HTTP POST (one
    round trip) and returns each result, or an `RpcError` in its place. Transport failures raise
    (requests' ConnectionError, Timeout). Falls back to one `provider.make_request` per call for
    providers without an HTTP endpoint."""

    def __init__(self, w3: Web3, timeout: float = 30.0, chunk: int = 1000) -> None:
        self.w3, self.timeout, self.chunk = w3, timeout, chunk
        self.url: str | None = getattr(w3.provider, "endpoint_uri", None)
        self._session = requests.Session() if self.url and str(self.url).startswith("http") else None
        self._ids = itertools.count(1)

    def call(self, method: str, params: list[Any]) -> Any:
        (out,) = self.batch([(method, params)])
        if isinstance(out, RpcError):
            raise out
        return out

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(calls), self.chunk):
            out += self._batch(calls[i:i + self.chunk])
        return out

    def _batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        if not calls:
            return []
        if self._session is None:
            answers = [self.w3.provider.make_request(m, p) for m, p in calls]  # type: ignore[arg-type]
        else:
            ids = [next(self._ids) for _ in calls]
            payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in zip(ids, calls)]
            resp = self._session.post(self.url, data=json.dumps(payload),  # type: ignore[arg-type]
                                      headers={"Content-Type": "application/json"}, timeout=self.timeout)
            resp.raise_for_status()
            body = resp.json()
            if isinstance(body, dict):  # the node refused the batch as a whole
                raise RpcError("batch", body.get("error") or {"message": str(body)[:200]})
            by_id = {r.get("id"): r for r in body}
            answers = [by_id.get(i) or {"error": {"message": "no answer in batch"}} for i in ids]  # type: ignore[misc]
        return [RpcError(m, dict(a["error"])) if a.get("error") is not None else a.get("result")
                for (m, _), a in zip(calls, answers)]


def deploy(w3: Web3, name: str, sender: str, *args: Any) -> Contract:
    """Deploy `name` from an unlocked node account and wait for the receipt."""
    art = load_artifact(name)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    tx_hash = factory.constructor(*args).transact({"from": sender})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1:
        raise RuntimeError(f"deploying {name} failed in tx {tx_hash.hex()}")
    return contract(w3, name, str(receipt["contractAddress"]))


# ------------------------------------------------------------------ transactions

Sender = str | LocalAccount  # an unlocked node account, or a local key that signs here


class ChainError(RuntimeError):
    """A transaction reverted; `error` is the decoded custom error, e.g. 'PeriodAlreadySettled(3)'."""

    def __init__(self, action: str, error: str, tx_hash: str | None = None):
        super().__init__(f"{action} reverted: {error}" + (f" (tx {tx_hash})" if tx_hash else ""))
        self.action, self.error, self.tx_hash = action, error, tx_hash


def transact(w3: Web3, call: Any, sender: Sender, action: str, value: int = 0) -> TxReceipt:
    """Send a contract call and wait for it; raise ChainError with the decoded error on revert."""
    address = sender if isinstance(sender, str) else sender.address
    params: dict[str, Any] = {"from": address, "value": value}
    try:
        if isinstance(sender, str):
            tx_hash = call.transact(params)
        else:
            params["nonce"] = w3.eth.get_transaction_count(checksum(address), "pending")  # type: ignore[arg-type]
            signed = sender.sign_transaction(call.build_transaction(params))
            tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    except ContractLogicError as e:  # custom errors, and reverts without data
        data = e.data if isinstance(e.data, (str, bytes)) else None
        raise ChainError(action, decode_error(data) if data else (e.message or "reverted")) from None
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1:
        raise ChainError(action, "reverted", tx_hash.hex())
    return receipt


def deploy_factory(w3: Web3, sender: str) -> Contract:
    return deploy(w3, "AgreementFactory", sender)


def create_agreement(w3: Web3, factory: Contract, sender: Sender, config: Config, *,
                     customer: Sender | None = None,
                     customer_key: bytes | str | None = None) -> tuple[Contract, TxReceipt]:
    """Create the agreement for `config` through the factory; the sender becomes its vendor. No
    period settles until the customer accepts: `customer_key` signs the acceptance and the
    agreement is created accepted (one transaction); `customer` (an unlocked account or a local
    key) sends `accept()` right after; with neither, the customer accepts later (`settle.accept`)."""
    if customer_key is not None:
        from oracle.chain.signing import sign_acceptance  # signing builds on this module's peers
        vendor = sender if isinstance(sender, str) else sender.address
        acceptance = sign_acceptance(config, vendor, w3.eth.chain_id, customer_key, factory=factory.address)
        call = factory.get_function_by_signature("createAgreement(bytes,bytes)")(config.encoded(), acceptance)
    else:
        call = factory.get_function_by_signature("createAgreement(bytes)")(config.encoded())
    receipt = transact(w3, call, sender, "createAgreement")
    created = factory.events.AgreementCreated().process_receipt(receipt, errors=DISCARD)
    agreement = contract(w3, "Agreement", created[0]["args"]["agreement"])
    if customer is not None and customer_key is None:
        transact(w3, agreement.functions.accept(), customer, "accept")
    return agreement, receipt


def deposit(w3: Web3, agreement: Contract, sender: Sender, amount: int) -> TxReceipt:
    """Fund the escrow (approving the ERC-20 first when the agreement settles in a token)."""
    asset = agreement.functions.asset().call()
    if int(asset, 16) == 0:
        return transact(w3, agreement.functions.deposit(amount), sender, "deposit", value=amount)
    token = contract(w3, "TestToken", asset)  # any ERC-20: only approve() is used
    transact(w3, token.functions.approve(agreement.address, amount), sender, "approve")
    return transact(w3, agreement.functions.deposit(amount), sender, "deposit")


def submit_report(w3: Web3, agreement: Contract, config: Config, report: Report, signatures: bytes,
                  sender: Sender) -> TxReceipt:
    call = agreement.functions.submitReport(config.encoded(), report.period, report.terms_hash,
                                            report.evidence_root, report.packed_attainments, signatures)
    return transact(w3, call, sender, f"submitReport(period {report.period})")


def agreement_events(agreement: Contract, receipt: TxReceipt) -> list[tuple[str, dict[str, Any]]]:
    """(event name, args) of every Agreement event in a receipt, in log order."""
    out = []
    for log in receipt["logs"]:
        if log["address"] != agreement.address:
            continue
        for event in agreement.events:  # type: ignore[attr-defined]  # web3's ContractEvents iterates
            try:
                decoded = event().process_log(log)
            except Exception:  # noqa: BLE001 - not this event
                continue
            out.append((decoded["event"], dict(decoded["args"])))
            break
    return out
