"""The node's view of the chain: the agreements it serves, each one's on-chain state
(`configHash`, `nextPeriod`) and Config in force (rebuilt from its logs), and the chain's clock."""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from web3 import Web3
from web3.contract import Contract

from oracle.chain.abi import decode_event, decode_result, encode_call, event_topic
from oracle.chain.config import CONFIG_EVENTS, Config, ConfigNotFound, config_in_force
from oracle.chain.tx import Rpc, RpcError
from oracle.core.terms import Terms, terms_hash
from oracle.node.errors import ServiceError
from oracle.node.settings import AgreementSpec

LOGS_GROUP = 200  # agreements whose Config logs are fetched by one eth_getLogs


@cache
def _events() -> dict[str, str]:
    """topic -> name of the events that log a Config (read from the ABI on first use)."""
    return {event_topic("Agreement", name): name for name in CONFIG_EVENTS}


@dataclass
class Served:
    """An agreement this node serves: its settings, terms and (once read) its Config."""

    spec: AgreementSpec
    terms: Terms
    terms_bytes: bytes
    address: str
    contract: Contract | None = None
    config: Config | None = None
    config_hash: bytes | None = None  # of `config`


@dataclass(frozen=True, slots=True)
class OnChain:
    """An agreement's state as read in one batch: the Config hash in storage, the next period."""

    config_hash: bytes
    next_period: int


class ChainClock:
    """The chain's time: the latest block's timestamp, read at most once a second and moved on
    by this machine's monotonic clock in between (a node without new blocks keeps time). When
    the node cannot be reached, the last reading goes on being moved on."""

    def __init__(self, w3: Web3, max_age: float = 1.0) -> None:
        self.w3, self.max_age = w3, max_age
        self._read: tuple[float, float] | None = None  # (block timestamp, monotonic time read)

    def __call__(self) -> float:
        now = time.monotonic()
        if self._read is None or now - self._read[1] >= self.max_age:
            try:
                self._read = (float(self.w3.eth.get_block("latest")["timestamp"]), now)
            except Exception:  # noqa: BLE001 - unreachable: keep the last reading, if any
                if self._read is None:
                    raise
        return self._read[0] + (now - self._read[1])


class ChainView:
    """Reads the served agreements' state in JSON-RPC batches and keeps each one's Config."""

    def __init__(self, rpc: Rpc, from_block: int) -> None:
        self.rpc, self.from_block = rpc, from_block

    def refresh(self, a: Served, current: bytes | None = None) -> Config:
        """The on-chain Config (re-read when `configHash` changes); the terms must match it.
        `current` is the configHash already read (by `snapshot`)."""
        if current is None:
            got = self.snapshot([a])[a.spec.key]
            if isinstance(got, Exception):
                raise got
            current = got.config_hash
        if a.config is None or a.config_hash != current:
            failed = self.load_configs([(a, current)])
            if failed:
                raise failed[a.spec.key]
        assert a.config is not None
        return a.config

    def next_period(self, a: Served) -> int:
        call = {"to": a.address, "data": encode_call("Agreement", "nextPeriod")}
        return int(decode_result("Agreement", "nextPeriod", self.rpc.call("eth_call", [call, "latest"])))

    def snapshot(self, agreements: list[Served]) -> dict[str, OnChain | Exception]:
        """The state of each agreement, read in one JSON-RPC batch; each agreement whose Config
        is not known yet (or changed) has it loaded from its logs, also batched. An agreement
        that cannot be read gets its exception instead; a node that cannot be reached raises."""
        calls: list[tuple[str, list[Any]]] = []
        for a in agreements:
            calls += [("eth_call", [{"to": a.address, "data": encode_call("Agreement", "configHash")}, "latest"]),
                      ("eth_call", [{"to": a.address, "data": encode_call("Agreement", "nextPeriod")}, "latest"])]
        answers = self.rpc.batch(calls)
        out: dict[str, OnChain | Exception] = {}
        stale: list[tuple[Served, bytes]] = []
        for k, a in enumerate(agreements):
            config_hash, next_period = answers[2 * k:2 * k + 2]
            bad = next((x for x in (config_hash, next_period) if isinstance(x, RpcError)), None)
            if bad is not None:
                out[a.spec.key] = bad
                continue
            try:
                current = bytes(decode_result("Agreement", "configHash", config_hash))
                out[a.spec.key] = OnChain(current, int(decode_result("Agreement", "nextPeriod", next_period)))
            except Exception as exc:  # noqa: BLE001 - e.g. no contract at that address
                out[a.spec.key] = ServiceError(f"agreement {a.address}: cannot read its state ({exc})")
                continue
            if a.config is None or a.config_hash != current:
                stale.append((a, current))
        for key, failure in self.load_configs(stale).items():
            out[key] = failure
        return out

    def load_configs(self, stale: list[tuple[Served, bytes]]) -> dict[str, Exception]:
        """Rebuild each agreement's Config from its logs (`config_in_force`; one eth_getLogs per
        LOGS_GROUP agreements, one batch) and check it against the terms file."""
        if not stale:
            return {}
        logs = self._config_logs([a for a, _ in stale])
        failed: dict[str, Exception] = {}
        for a, current in stale:
            try:
                found = logs[a.address.lower()]
                if isinstance(found, Exception):
                    raise found
                blobs = [bytes(decode_event("Agreement", _events()[lg["topics"][0]], lg)["config"]) for lg in found]
                try:
                    config = config_in_force(blobs, current, f"agreement {a.address}")
                except ConfigNotFound as missing:
                    raise ServiceError(f"{missing} (from_block {self.from_block})") from missing
                if "0x" + config.terms_hash.hex() != terms_hash(a.terms):
                    raise ServiceError(f"{a.spec.terms} hashes to {terms_hash(a.terms)} but agreement {a.address} "
                                       f"was made for 0x{config.terms_hash.hex()}")
            except Exception as exc:  # noqa: BLE001 - this agreement only
                failed[a.spec.key] = exc
                continue
            a.config, a.config_hash = config, current
        return failed

    def _config_logs(self, agreements: list[Served]) -> dict[str, list[dict[str, Any]] | Exception]:
        """Each agreement's Config logs (raw, in log order), by lower-case address."""
        topics = [list(_events())]
        # one eth_getLogs per group of agreements (the node scans the blocks once per query)
        groups = [agreements[i:i + LOGS_GROUP] for i in range(0, len(agreements), LOGS_GROUP)]
        answers = self.rpc.batch([("eth_getLogs", [{
            "address": [a.address for a in group], "fromBlock": hex(self.from_block),
            "toBlock": "latest", "topics": topics}]) for group in groups])
        by_address: dict[str, list[dict[str, Any]] | Exception] = {}
        for group, answer in zip(groups, answers):
            for a in group:
                by_address[a.address.lower()] = answer if isinstance(answer, Exception) else []
            if not isinstance(answer, Exception):
                for lg in answer:
                    found = by_address.get(str(lg["address"]).lower())
                    if isinstance(found, list):
                        found.append(lg)
        return by_address
