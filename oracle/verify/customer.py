"""Customer-side verification of an agreement from the chain alone (plus the customer's terms file).

Checks, each reported as a named check with ✓/✗:
- code: the agreement is an EIP-1167 clone; the implementation and the factory that created it run
  exactly the bytecode this repository compiles (immutables and the metadata hash handled: see
  `compare_code`);
- terms: the on-chain termsHash is the hash of the customer's terms file, and the schedule the
  agreement was created with is the one the terms give (fees, tiers, cap, calendar-month periods);
- oracles (optional): the initial oracle set is the agreed one;
- per settled period, from logs alone: the signatures recover to distinct oracles of the set in
  force at that block, at least the threshold; the credit equals the credit the terms give for the
  signed attainments (recomputed with oracle.core.credit); paid + deferred + debt add up to it; periods
  are settled in order, none missing or doubled;
- books: claimable, debt and escrow balance agree with the event history.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

from oracle.chain.abi import contract, event_topic, load_artifact
from oracle.chain.config import Config, config_from_terms, unpack_attainments
from oracle.chain.report import DOMAIN_NAME, DOMAIN_VERSION, Report, domain_separator
from oracle.chain.signing import recover_signer
from oracle.core.period import period_labels
from oracle.core.terms import Terms, load_terms, terms_hash

DEBT_PERIOD = 2**256 - 1
CLONE_PREFIX = bytes.fromhex("363d3d373d3d3d363d73")
CLONE_SUFFIX = bytes.fromhex("5af43d82803e903d91602b57fd5bf3")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class PeriodCheck:
    period: int
    label: str
    block: int
    tx_hash: str
    evidence_root: str
    attainments: list[list[int]]
    signers: list[str]
    expected_credit: int
    credit: int
    paid: int
    deferred: int
    debt: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Verification:
    agreement: str
    chain_id: int
    checks: list[Check]
    periods: list[PeriodCheck]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and all(p.ok for p in self.periods)

    def first_problem(self) -> str | None:
        for c in self.checks:
            if not c.ok:
                return f"{c.name}: {c.detail}"
        for p in self.periods:
            if p.problems:
                return f"period {p.period} ({p.label}): {p.problems[0]}"
        return None

    def to_json_dict(self) -> dict[str, Any]:
        return {"agreement": self.agreement, "chain_id": self.chain_id, "ok": self.ok,
                "checks": [asdict(c) for c in self.checks],
                "periods": [asdict(p) | {"ok": p.ok, "expected_credit": str(p.expected_credit),
                                         "credit": str(p.credit), "paid": str(p.paid),
                                         "deferred": str(p.deferred), "debt": str(p.debt)} for p in self.periods]}


# ------------------------------------------------------------------ bytecode

def _strip_metadata(code: bytes) -> tuple[bytes, bytes]:
    """(code, metadata): solc appends CBOR metadata whose length is the last two bytes."""
    if len(code) < 2:
        return code, b""
    n = int.from_bytes(code[-2:], "big") + 2
    return (code[:-n], code[-n:]) if n <= len(code) else (code, b"")


def compare_code(onchain: bytes, compiled: bytes, immutables: Sequence[bytes]) -> tuple[bool, str]:
    """Does `onchain` run the `compiled` runtime code?

    Metadata: the trailing CBOR (IPFS hash of the metadata, solc version) is compared separately and
    only reported: it changes with comments and file paths, not behaviour. Immutables: solc leaves
    32-byte zero words where immutables go; each differing word must be a zero word in `compiled`
    holding one of the `immutables` we expect (chain id, addresses, name hashes...). Any other byte
    difference fails."""
    code_a, meta_a = _strip_metadata(onchain)
    code_b, meta_b = _strip_metadata(compiled)
    if len(code_a) != len(code_b):
        return False, f"code length {len(code_a)} differs from the repository's {len(code_b)}"
    allowed = {bytes(v).rjust(32, b"\x00") for v in immutables}
    i = 0
    while i < len(code_a):
        if code_a[i] == code_b[i]:
            i += 1
            continue
        # find a 32-byte zero window in compiled covering i whose on-chain word is an expected immutable
        for start in range(max(0, i - 31), i + 1):
            window = code_b[start:start + 32]
            if len(window) == 32 and window == b"\x00" * 32 and code_a[start:start + 32] in allowed:
                i = start + 32
                break
        else:
            return False, f"code differs at byte {i}"
    return True, "identical" if meta_a == meta_b else "identical code; metadata hash differs (comments/paths)"


def _short_string(s: str) -> bytes:
    data = s.encode()
    return data.ljust(31, b"\x00") + bytes([len(data)])


def _agreement_immutables(chain_id: int, implementation: str) -> list[bytes]:
    impl = bytes.fromhex(implementation[2:])
    return [domain_separator(chain_id, implementation), chain_id.to_bytes(32, "big"), impl,
            keccak(text=DOMAIN_NAME), keccak(text=DOMAIN_VERSION),
            _short_string(DOMAIN_NAME), _short_string(DOMAIN_VERSION)]


def _check_code(w3: Web3, agreement: str, factory: str | None) -> tuple[list[Check], str | None]:
    checks: list[Check] = []
    code = bytes(w3.eth.get_code(cast(ChecksumAddress, agreement)))
    if not (len(code) == 45 and code.startswith(CLONE_PREFIX) and code.endswith(CLONE_SUFFIX)):
        return [Check("code: agreement is an EIP-1167 clone", False, f"{len(code)}-byte code is not a clone")], None
    implementation = to_checksum_address(code[10:30])
    checks.append(Check("code: agreement is an EIP-1167 clone", True, f"implementation {implementation}"))
    ok, detail = compare_code(bytes(w3.eth.get_code(implementation)),
                              bytes.fromhex(load_artifact("Agreement")["deployedBytecode"]),
                              _agreement_immutables(w3.eth.chain_id, implementation))
    checks.append(Check("code: implementation matches the repository's Agreement", ok, detail))

    logs = w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest",
                            "topics": [event_topic("AgreementFactory", "AgreementCreated"), None, None,
                                        "0x" + bytes.fromhex(agreement[2:]).rjust(32, b"\x00").hex()]})
    creators = sorted({to_checksum_address(log["address"]) for log in logs})
    if factory is not None:
        known = to_checksum_address(factory)
        checks.append(Check("code: created by the known factory", known in creators,
                            f"creators {creators or 'none'}; expected {known}"))
    if not creators:
        checks.append(Check("code: created by a factory", False, "no AgreementCreated log names this agreement"))
        return checks, None
    for creator in creators:
        ok, detail = compare_code(bytes(w3.eth.get_code(creator)),
                                  bytes.fromhex(load_artifact("AgreementFactory")["deployedBytecode"]),
                                  [bytes.fromhex(implementation[2:])])
        checks.append(Check(f"code: factory {creator} matches the repository's AgreementFactory", ok, detail))
    return checks, creators[0]


# ------------------------------------------------------------------ history

def agreement_logs(w3: Web3, agreement: Contract) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Every event of the agreement as (name, args, log), in chain order."""
    by_topic = {}
    for item in agreement.abi:
        if item["type"] == "event":
            topic = bytes.fromhex(event_topic("Agreement", item["name"])[2:])
            by_topic[topic] = getattr(agreement.events, item["name"])
    out = []
    for log in w3.eth.get_logs({"address": agreement.address, "fromBlock": 0, "toBlock": "latest"}):
        event = by_topic.get(bytes(log["topics"][0]))
        if event is None:
            continue
        decoded = event().process_log(log)
        out.append((decoded["event"], dict(decoded["args"]), dict(log)))
    out.sort(key=lambda e: (e[2]["blockNumber"], e[2]["logIndex"]))
    return out


def recover_signers(report: Report, chain_id: int, agreement: str, signatures: bytes) -> list[tuple[int, str]]:
    """(oracle index, signer) of each 66-byte entry of a report's signatures, through the one
    signer recovery (oracle.chain.signing); "invalid" where an entry recovers to nothing (the
    contract refuses such an entry, high s included)."""
    digest = report.digest(chain_id, agreement)
    return [(signatures[at], recover_signer(digest, signatures[at + 1:at + 66]) or "invalid")
            for at in range(0, len(signatures), 66)]


def verify_agreement(w3: Web3, address: str, terms: Terms, *, factory: str | None = None,
                     oracles: Sequence[str] | None = None, threshold: int | None = None) -> Verification:
    address = to_checksum_address(address)
    chain_id = w3.eth.chain_id
    agreement = contract(w3, "Agreement", address)
    checks, _ = _check_code(w3, address, factory)
    if not all(c.ok for c in checks):
        return Verification(address, chain_id, checks, [])

    events = agreement_logs(w3, agreement)
    configured = [args for name, args, _ in events if name == "AgreementConfigured"]
    if len(configured) != 1:
        checks.append(Check("history: configured once", False, f"{len(configured)} AgreementConfigured events"))
        return Verification(address, chain_id, checks, [])
    config = Config.decode(bytes(configured[0]["config"]))

    expected_terms = terms_hash(terms)
    onchain_terms = "0x" + bytes(agreement.functions.termsHash().call()).hex()
    checks.append(Check("terms: on-chain termsHash is the hash of your terms file", onchain_terms == expected_terms,
                        f"on-chain {onchain_terms}, file {expected_terms}"))
    from_terms = config_from_terms(terms, customer=config.customer, asset=config.asset,
                                   oracles=config.oracles, threshold=config.threshold)
    checks.append(Check("terms: the credit schedule and periods are the terms'", from_terms == config,
                        "fees, tiers, cap and period bounds" if from_terms == config else
                        _schedule_difference(from_terms, config)))
    if oracles is not None:
        agreed = tuple(sorted((to_checksum_address(a) for a in oracles), key=lambda a: int(a, 16)))
        same = agreed == config.oracles and (threshold is None or threshold == config.threshold)
        checks.append(Check("oracles: the initial oracle set is the agreed one", same,
                            f"on-chain {config.threshold} of {list(config.oracles)}"))

    labels = period_labels(terms)
    periods: list[PeriodCheck] = []
    current = config
    totals = {"deferred": 0, "claimed": 0, "debt": 0, "repaid": 0, "deposited": 0, "paid": 0,
              "withdrawn": 0, "returned": 0}
    by_tx: dict[bytes, list[tuple[str, dict[str, Any]]]] = {}
    for name, args, log in events:
        by_tx.setdefault(bytes(log["transactionHash"]), []).append((name, args))
    for name, args, log in events:
        if name == "OracleSetChanged":
            current = Config.decode(bytes(args["config"]))
        elif name == "ReportAccepted":
            periods.append(_check_period(args, log, current, labels, chain_id, address,
                                         by_tx[bytes(log["transactionHash"])], len(periods)))
        elif name == "Deposited":
            totals["deposited"] += args["amount"]
        elif name == "CreditPaid":
            totals["paid"] += args["amount"]
        elif name == "CreditDeferred":
            totals["deferred"] += args["amount"]
        elif name == "Claimed":
            totals["claimed"] += args["amount"]
        elif name == "DebtRecorded":
            totals["debt"] += args["amount"]
        elif name == "DebtRepaid":
            totals["repaid"] += args["amount"]
        elif name == "Withdrawn":
            totals["withdrawn"] += args["amount"]
        elif name == "EscrowReturned":
            totals["returned"] += args["amount"]

    settled = agreement.functions.nextPeriod().call()
    checks.append(Check("periods: settled in order, none missing or doubled",
                        [p.period for p in periods] == list(range(settled)),
                        f"{settled} settled; reports for periods {[p.period for p in periods]}"))
    claimable = agreement.functions.claimable().call()
    debt = agreement.functions.debt().call()
    checks.append(Check("books: claimable = deferred - claimed", claimable == totals["deferred"] - totals["claimed"],
                        f"claimable {claimable}"))
    checks.append(Check("books: debt = recorded - repaid", debt == totals["debt"] - totals["repaid"], f"debt {debt}"))
    balance = agreement.functions.escrowBalance().call()
    expected = totals["deposited"] - totals["paid"] - totals["claimed"] - totals["withdrawn"] - totals["returned"]
    checks.append(Check("books: escrow balance covers the event history", balance >= expected,
                        f"balance {balance}, from events {expected}"
                        + ("" if balance == expected else " (extra funds sent without deposit())")))
    return Verification(address, chain_id, checks, periods)


def _schedule_difference(a: Config, b: Config) -> str:
    for name in ("monthly_fee", "credit_cap_bps", "site_fees", "objectives", "period_bounds"):
        if getattr(a, name) != getattr(b, name):
            return f"{name}: terms give {getattr(a, name)}, agreement has {getattr(b, name)}"
    return "differs"


def _check_period(args: dict[str, Any], log: dict[str, Any], config: Config, labels: list[str], chain_id: int,
                  agreement: str, tx_events: list[tuple[str, dict[str, Any]]], position: int) -> PeriodCheck:
    period = args["period"]
    raw = bytes(args["attainments"])
    problems: list[str] = []
    try:
        attainments = unpack_attainments(raw)
        expected = config.credit(attainments)
    except (ValueError, IndexError) as exc:
        attainments, expected = [], -1
        problems.append(f"attainments do not fit the schedule: {exc}")
    report = Report(period, bytes(args["termsHash"]), bytes(args["evidenceRoot"]), tuple(map(tuple, attainments)))
    signers: list[str] = []
    if report.packed_attainments == raw:
        recovered = recover_signers(report, chain_id, agreement, bytes(args["signatures"]))
        seen: set[str] = set()
        for index, signer in recovered:
            if index >= len(config.oracles) or signer != config.oracles[index]:
                problems.append(f"signature by {signer} is not from oracle #{index} of the set in force")
            elif signer in seen:
                problems.append(f"oracle {signer} counted twice")
            else:
                seen.add(signer)
        signers = sorted(seen)
        if len(seen) < config.threshold:
            problems.append(f"{len(seen)} valid oracle signatures, threshold {config.threshold}")
    if period != position:
        problems.append(f"expected period {position} next, got {period}" + (" (doubled)" if period < position else
                                                                              " (skipped)"))
    if expected >= 0 and args["credit"] != expected:
        problems.append(f"credit {args['credit']} paid, terms give {expected}")
    mine = [(n, a) for n, a in tx_events if a.get("period") == period]
    paid = sum(a["amount"] for n, a in mine if n == "CreditPaid")
    deferred = sum(a["amount"] for n, a in mine if n == "CreditDeferred")
    debt = sum(a["amount"] for n, a in mine if n == "DebtRecorded")
    if paid + deferred + debt != args["credit"]:
        problems.append(f"paid {paid} + claimable {deferred} + debt {debt} != credit {args['credit']}")
    label = labels[period] if period < len(labels) else f"#{period}"
    return PeriodCheck(period, label, log["blockNumber"], "0x" + bytes(log["transactionHash"]).hex(),
                       "0x" + report.evidence_root.hex(), attainments, signers, expected, args["credit"],
                       paid, deferred, debt, problems)


def verify(rpc: str, address: str, terms_path: str | Path, **kw: Any) -> Verification:
    return verify_agreement(Web3(Web3.HTTPProvider(rpc)), address, load_terms(terms_path), **kw)
