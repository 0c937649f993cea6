"""`slacomp watch`: a customer's (or a named auditor's) long-running guard over one agreement.

Every report proposed on-chain (`ReportProposed`, a revision included) is judged before its
challenge window closes: its bundle is fetched from where the vendor publishes it and replayed
as `slacomp audit` does (oracle.verify.judge). A proposal that does not replay bit for bit is
disputed (`dispute(cfg, period, reasonHash)`, with the Config's bond) and the reason, the first
discrepancy, is kept beside the journal as `reasons/<reasonHash>.txt` for the arbiters.

The journal (JSON lines, fsynced) records each decision once, the intent to dispute before the
transaction is sent: after a crash the watcher reads the chain for any proposal it was
disputing and neither disputes twice nor forgets one it meant to dispute."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

from oracle.chain.abi import contract
from oracle.chain.config import Config, config_in_force, unpack_attainments
from oracle.chain.tx import ChainError, Sender, transact
from oracle.core.period import period_at
from oracle.core.terms import Terms
from oracle.verify.judge import BundleSource, FetchError, Proposal, Verdict, judge

# IAgreement.PeriodState
PROPOSED = 1


@dataclass(frozen=True)
class Decision:
    """One journal line: what the watcher concluded about (period, revision)."""

    period: int
    revision: int
    action: str  # "accepted" | "disputing" | "disputed" | "missed" | "gone"
    reason: str
    reason_hash: str = ""
    tx: str = ""
    at: int = 0


class Journal:
    """Append-only decisions, fsynced per line; the last decision per (period, revision) holds."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "journal.jsonl"
        self.decisions: dict[tuple[int, int], Decision] = {}
        if self.path.exists():
            for n, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    d = Decision(**json.loads(line))
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{self.path}:{n}: not a journal line ({exc})") from None
                self.decisions[(d.period, d.revision)] = d

    def record(self, decision: Decision) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(asdict(decision), sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.decisions[(decision.period, decision.revision)] = decision

    def keep_reason(self, reason_hash: str, reason: str) -> Path:
        path = self.folder / "reasons" / f"{reason_hash}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(reason + "\n")
        return path


def reason_hash(reason: str) -> str:
    """What a dispute commits to: keccak256 of the reason's UTF-8 bytes."""
    return "0x" + keccak(reason.encode()).hex()


@dataclass(frozen=True)
class Seen:
    """A proposal as the chain shows it now."""

    proposal: Proposal
    state: int
    window_end: int


class Watcher:
    """Judges and, when wrong, disputes every open proposal of one agreement."""

    def __init__(self, w3: Web3, address: str, terms: Terms, source: BundleSource, sender: Sender,
                 journal: Path, *, clock: Callable[[], float] = time.time,
                 log: Callable[[str], None] = lambda _line: None) -> None:
        self.w3, self.terms, self.source, self.sender = w3, terms, source, sender
        self.agreement: Contract = contract(w3, "Agreement", address)
        self.journal = Journal(journal)
        self.clock, self.log = clock, log
        self.from_block = 0

    # ------------------------------------------------------------------ chain reading
    def _proposals(self) -> Iterator[Seen]:
        """Every proposal logged since the last look, with its current state (a revision
        replaces its predecessor: only the latest revision of a period can still be open)."""
        head = self.w3.eth.block_number
        latest: dict[int, Any] = {}
        for log in self.agreement.events.ReportProposed().get_logs(from_block=self.from_block, to_block=head):
            args = log["args"]
            key = int(args["period"])
            if key not in latest or int(args["revision"]) >= int(latest[key]["revision"]):
                latest[key] = args
        self.from_block = head + 1
        for period, args in sorted(latest.items()):
            state, _credit, revision, window_end, _disputed = self.agreement.functions.proposal(period).call()
            if int(revision) != int(args["revision"]):
                continue  # replaced since: the newer revision's own log is judged
            label = period_at(self.terms, period).label
            proposal = Proposal(period, label, int(revision), "0x" + bytes(args["evidenceRoot"]).hex(),
                                unpack_attainments(bytes(args["attainments"])))
            yield Seen(proposal, int(state), int(window_end))

    def config(self) -> Config:
        blobs = [bytes(e["args"]["config"]) for name in ("AgreementConfigured", "OracleSetChanged")
                 for e in getattr(self.agreement.events, name)().get_logs(from_block=0)]
        return config_in_force(blobs, self.agreement.functions.configHash().call(),
                               f"agreement {self.agreement.address}")

    # ------------------------------------------------------------------ one pass
    def step(self) -> list[Decision]:
        """Look at the chain once: judge every proposal not decided yet; returns the decisions made."""
        made: list[Decision] = []
        for seen in self._proposals():
            p = seen.proposal
            done = self.journal.decisions.get((p.period, p.revision))
            if done is not None and done.action != "disputing":
                continue
            decision = self._decide(seen, done)
            if decision is not None:
                self.journal.record(decision)
                made.append(decision)
                self.log(f"period {p.period} revision {p.revision}: {decision.action} ({decision.reason})")
        return made

    def _decide(self, seen: Seen, intent: Decision | None) -> Decision | None:
        p, now = seen.proposal, int(self.clock())
        if seen.state != PROPOSED:  # disputed (by us, before a crash, or by someone else) or settled
            if intent is not None:
                return Decision(p.period, p.revision, "disputed", intent.reason, intent.reason_hash, intent.tx, now)
            return Decision(p.period, p.revision, "gone", f"already {seen.state} when seen", at=now)
        if now >= seen.window_end:
            return Decision(p.period, p.revision, "missed", f"window closed at {seen.window_end}", at=now)
        if intent is not None:
            return self._dispute(p, intent.reason, now)
        try:
            verdict = judge(self.source, self.agreement.address, p)
        except FetchError as exc:
            self.log(f"period {p.period}: no verdict yet ({exc})")
            return None  # try again on the next pass, while the window is open
        if verdict.ok:
            return Decision(p.period, p.revision, "accepted", verdict.reason, at=now)
        return self._dispute(p, verdict.reason, now, verdict)

    def _dispute(self, p: Proposal, reason: str, now: int, verdict: Verdict | None = None) -> Decision:
        digest = reason_hash(reason)
        if verdict is not None:  # the intent first: a crash after sending is resolved from the chain
            self.journal.keep_reason(digest, reason)
            self.journal.record(Decision(p.period, p.revision, "disputing", reason, digest, at=now))
        cfg = self.config()
        call = self.agreement.functions.dispute(cfg.encoded(), p.period, bytes.fromhex(digest[2:]))
        try:
            receipt = transact(self.w3, call, self.sender, "dispute", value=_bond_value(cfg))
        except ChainError as exc:
            return Decision(p.period, p.revision, "disputing", reason, digest, f"refused: {exc.error}", now)
        tx = "0x" + bytes(receipt["transactionHash"]).hex()
        return Decision(p.period, p.revision, "disputed", reason, digest, tx, now)

    def run(self, poll_s: float, stop: Callable[[], bool]) -> None:
        while not stop():
            self.step()
            time.sleep(poll_s)


def _bond_value(cfg: Config) -> int:
    """ETH sent with a dispute: the bond when the asset is native ETH (an ERC-20 bond is approved)."""
    bond = int(getattr(cfg, "dispute_bond", 0) or 0)
    return bond if int(cfg.asset, 16) == 0 else 0
