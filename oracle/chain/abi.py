"""Contract bindings: ABI and bytecode from the build artifacts (`brownie compile` writes them to
build/contracts), calldata and log encoding, and custom-error decoding. Transactions: `oracle.chain.tx`."""
from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

PROJECT_ROOT = Path(__file__).resolve().parents[2]
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


@cache
def _factory(w3: Web3, name: str) -> type[Contract]:
    return w3.eth.contract(abi=load_artifact(name)["abi"])


def contract(w3: Web3, name: str, address: str) -> Contract:
    """A bound contract (the ABI is parsed once per web3 instance and contract name)."""
    return _factory(w3, name)(address=Web3.to_checksum_address(address))


# ------------------------------------------------------------------ lean JSON-RPC (the oracle's hot path)


@cache
def _abi_item(name: str, kind: str, item: str) -> dict[str, Any]:
    for entry in load_artifact(name)["abi"]:
        if entry["type"] == kind and entry.get("name") == item:
            return dict(entry)
    raise ArtifactError(f"{name} has no {kind} {item}")


def _types(params: list[dict[str, Any]]) -> list[str]:
    return [p["type"] for p in params]


@cache
def selector(name: str, function: str) -> bytes:
    f = _abi_item(name, "function", function)
    return keccak(text=f"{function}({','.join(_types(f['inputs']))})")[:4]


def encode_call(name: str, function: str, *args: Any) -> str:
    """Calldata (hex) of `name.function(*args)`, encoded with the ABI of the build artifact."""
    f = _abi_item(name, "function", function)
    return "0x" + (selector(name, function) + abi_encode(_types(f["inputs"]), list(args))).hex()


def decode_result(name: str, function: str, data: str) -> Any:
    """The (single) return value of an eth_call to `name.function`."""
    f = _abi_item(name, "function", function)
    out = abi_decode(_types(f["outputs"]), bytes.fromhex(data[2:] if data.startswith("0x") else data))
    return out[0] if len(out) == 1 else out


@cache
def event_topic(name: str, event: str) -> str:
    e = _abi_item(name, "event", event)
    return "0x" + keccak(text=f"{event}({','.join(_types(e['inputs']))})").hex()


def decode_event(name: str, event: str, log: dict[str, Any]) -> dict[str, Any]:
    """The non-indexed arguments of a raw log (eth_getLogs JSON) of `name.event`."""
    e = _abi_item(name, "event", event)
    plain = [i for i in e["inputs"] if not i.get("indexed")]
    data = log["data"]
    values = abi_decode(_types(plain), bytes.fromhex(data[2:] if data.startswith("0x") else data))
    return {i["name"]: v for i, v in zip(plain, values)}



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


