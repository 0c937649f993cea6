"""Contract bindings: ABI and bytecode from the build artifacts (`brownie compile` writes them to
build/contracts), and small web3.py v7 helpers to deploy and call the contracts."""
from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD
from web3.types import TxReceipt

from .report import Report
from .schedule import Config

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = Path(os.environ.get("SLACOMP_BUILD_DIR", PROJECT_ROOT / "build" / "contracts"))


class ArtifactError(RuntimeError):
    pass


@cache
def load_artifact(name: str) -> dict[str, Any]:
    """The compiled artifact of contract `name` (abi, bytecode, deployedBytecode)."""
    path = BUILD_DIR / f"{name}.json"
    if not path.exists():
        raise ArtifactError(f"{path} not found: run `make setup` (brownie compile) first")
    data = json.loads(path.read_text())
    return {"abi": data["abi"], "bytecode": data["bytecode"], "deployedBytecode": data["deployedBytecode"]}


def contract(w3: Web3, name: str, address: str) -> Contract:
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact(name)["abi"])


def deploy(w3: Web3, name: str, sender: str, *args: Any) -> Contract:
    """Deploy `name` from an unlocked node account and wait for the receipt."""
    art = load_artifact(name)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    tx_hash = factory.constructor(*args).transact({"from": sender})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1:
        raise RuntimeError(f"deploying {name} failed in tx {tx_hash.hex()}")
    return contract(w3, name, receipt["contractAddress"])


# ------------------------------------------------------------------ transactions

Sender = str | LocalAccount  # an unlocked node account, or a local key that signs here


class ChainError(RuntimeError):
    """A transaction reverted; `error` is the decoded custom error, e.g. 'PeriodAlreadySettled(3)'."""

    def __init__(self, action: str, error: str, tx_hash: str | None = None):
        super().__init__(f"{action} reverted: {error}" + (f" (tx {tx_hash})" if tx_hash else ""))
        self.action, self.error, self.tx_hash = action, error, tx_hash


@cache
def _error_selectors() -> dict[bytes, tuple[str, list[str]]]:
    out = {}
    for name in ("Agreement", "AgreementFactory", "TestToken"):
        for item in load_artifact(name)["abi"]:
            if item["type"] == "error":
                types = [i["type"] for i in item["inputs"]]
                sig = f"{item['name']}({','.join(types)})"
                out[keccak(text=sig)[:4]] = (item["name"], types)
    return out


def decode_error(data: bytes | str) -> str:
    """Human form of revert data: 'Name(arg, ...)' for our custom errors."""
    raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else bytes(data)
    known = _error_selectors().get(raw[:4])
    if known is None:
        return "0x" + raw.hex() if raw else "revert without data"
    name, types = known
    args = abi_decode(types, raw[4:]) if types else ()
    shown = ["0x" + a.hex() if isinstance(a, bytes) else str(a) for a in args]
    return f"{name}({', '.join(shown)})"


def transact(w3: Web3, call: Any, sender: Sender, action: str, value: int = 0) -> TxReceipt:
    """Send a contract call and wait for it; raise ChainError with the decoded error on revert."""
    address = sender if isinstance(sender, str) else sender.address
    params: dict[str, Any] = {"from": address, "value": value}
    try:
        if isinstance(sender, str):
            tx_hash = call.transact(params)
        else:
            params["nonce"] = w3.eth.get_transaction_count(address, "pending")
            signed = sender.sign_transaction(call.build_transaction(params))
            tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    except ContractCustomError as e:
        raise ChainError(action, decode_error(e.data)) from None
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1:
        raise ChainError(action, "reverted", tx_hash.hex())
    return receipt


def deploy_factory(w3: Web3, sender: str) -> Contract:
    return deploy(w3, "AgreementFactory", sender)


def create_agreement(w3: Web3, factory: Contract, sender: Sender, config: Config) -> tuple[Contract, TxReceipt]:
    """Create the agreement for `config` through the factory; the sender becomes its vendor."""
    receipt = transact(w3, factory.functions.createAgreement(config.encoded()), sender, "createAgreement")
    created = factory.events.AgreementCreated().process_receipt(receipt, errors=DISCARD)
    return contract(w3, "Agreement", created[0]["args"]["agreement"]), receipt


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
        for event in agreement.events:
            try:
                decoded = event().process_log(log)
            except Exception:  # noqa: BLE001 - not this event
                continue
            out.append((decoded["event"], dict(decoded["args"])))
            break
    return out
