"""Contract bindings: ABI and bytecode from the build artifacts (`brownie compile` writes them to
build/contracts), and small web3.py v7 helpers to deploy and call the contracts."""
from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.contract import Contract

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
