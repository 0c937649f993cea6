"""Auditor replay: for every settled period, load the evidence bundle the report's evidenceRoot
commits to, check the commitment, recompute the KPIs with the engine and compare every signed
attainment; plus everything `verify` checks (code, terms, signatures, credits, books).

The first discrepancy is named with its cause: evidence missing, evidence tampered, KPI mismatch,
signature not from an oracle, credit mismatch, code mismatch. Output is deterministic (no clock,
no local time zone), so two replays anywhere give identical bytes."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from web3 import Web3

from oracle.core.merkle import leaf_hash, verify_proof
from oracle.core.period import evidence_start, period_bounds
from oracle.core.terms import Terms, TermsError
from oracle.engine.replay import recompute
from oracle.evidence.bundle import BundleError, LoadedBundle, find_bundles, load_bundle
from oracle.evidence.commitment import evidence_leaves
from oracle.evidence.load import EvidenceError
from oracle.verify.customer import Verification, verify_agreement


@dataclass
class PeriodAudit:
    period: int
    label: str
    evidence_root: str
    bundle: str | None
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)  # objective/subject: signed vs recomputed

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)

    def first_problem(self) -> str | None:
        return next((f"{name}: {detail}" for name, ok, detail in self.checks if not ok), None)


@dataclass
class Audit:
    verification: Verification
    periods: list[PeriodAudit]

    @property
    def ok(self) -> bool:
        return self.verification.ok and all(p.ok for p in self.periods)

    def first_discrepancy(self) -> str | None:
        for check in self.verification.checks:
            if not check.ok:
                return f"{_cause(check.name)}: {check.name} ({check.detail})"
        for p, v in zip(self.periods, self.verification.periods, strict=True):
            problem = p.first_problem()
            if problem:
                return f"period {p.period} ({p.label}): {problem}"
            if v.problems:
                return f"period {v.period} ({v.label}): {_cause(v.problems[0])}: {v.problems[0]}"
        return None

    def to_json_dict(self) -> dict[str, Any]:
        return {"agreement": self.verification.agreement, "chain_id": self.verification.chain_id,
                "ok": self.ok, "first_discrepancy": self.first_discrepancy(),
                "verification": self.verification.to_json_dict(),
                "periods": [asdict(p) | {"ok": p.ok} for p in self.periods]}

    def to_markdown(self) -> str:
        v = self.verification
        first = "" if self.ok else f" — first discrepancy: {self.first_discrepancy()}"
        lines = [f"# Audit of agreement `{v.agreement}` (chain {v.chain_id})", "",
                 f"**Result: {'PASS' if self.ok else 'FAIL'}**" + first,
                 "", "## Agreement checks", "", "| check | result | detail |", "|---|---|---|"]
        lines += [f"| {c.name} | {'✓' if c.ok else '✗'} | {c.detail} |" for c in v.checks]
        lines += ["", "## Periods", "", "| period | evidence root | bundle | check | result | detail |",
                  "|---|---|---|---|---|---|"]
        for p in self.periods:
            for name, ok, detail in p.checks:
                lines.append(f"| {p.period} {p.label} | `{p.evidence_root[:18]}…` | "
                             f"{(p.bundle or '-')[:12]} | {name} | {'✓' if ok else '✗'} | {detail} |")
        for pv in v.periods:
            lines.append(f"| {pv.period} {pv.label} | | | signatures, credit and payout | "
                         f"{'✓' if pv.ok else '✗'} | {'; '.join(pv.problems) or f'credit {pv.credit}'} |")
        return "\n".join(lines) + "\n"


def _cause(problem: str) -> str:
    text = problem.lower()
    if "code" in text:
        return "code mismatch"
    if "signature" in text or "oracle" in text:
        return "signature not from an oracle"
    if "credit" in text or "paid" in text:
        return "credit mismatch"
    if "terms" in text:
        return "terms changed"
    if "period" in text:
        return "period missing or doubled"
    return "discrepancy"


def audit_agreement(w3: Web3, address: str, terms: Terms, store: str | Path, **verify_kw: Any) -> Audit:
    verification = verify_agreement(w3, address, terms, **verify_kw)
    periods = [audit_period(store, p.period, p.label, p.evidence_root, p.attainments)
               for p in verification.periods]
    return Audit(verification, periods)


def audit_period(store: str | Path, period: int, label: str, root: str, signed: list[list[int]]) -> PeriodAudit:
    """Replay one period from the first intact bundle of `store` whose evidence has `root` and
    compare every `signed` attainment (per objective, per subject) with the recomputed one."""
    audit = PeriodAudit(period, label, root, None)
    candidates = find_bundles(store, root)
    if not candidates:
        audit.checks.append(("evidence missing", False, f"no bundle in the store claims root {root}"))
        return audit
    loaded = None
    for path in candidates:  # the first bundle that is intact
        try:
            loaded = load_bundle(path)
            audit.bundle = loaded.bundle.id
            break
        except (BundleError, EvidenceError, TermsError) as exc:
            audit.checks.append(("evidence tampered", False, f"bundle {path.name[:12]}: {exc}"))
    if loaded is None:
        return audit
    audit.checks = [("bundle files match their manifest", True, f"bundle {(audit.bundle or '')[:12]}")]
    _compare(audit, loaded, root, signed)
    return audit


def _compare(audit: PeriodAudit, loaded: LoadedBundle, root: str, signed: list[list[int]]) -> None:
    result = recompute(loaded)
    audit.checks.append(("evidence tampered" if result.evidence_root != root else "evidence commitment",
                         result.evidence_root == root, f"recomputed root {result.evidence_root}"))
    if result.evidence_root != root:
        return
    recomputed = [[r.attainment_bps for r in o.results] for o in result.objectives]
    for o, row_signed, row_ours in zip(result.objectives, signed, recomputed, strict=False):
        for r, a, b in zip(o.results, row_signed, row_ours, strict=False):
            if a != b:
                audit.mismatches.append(f"{o.id}/{r.subject}: signed {a}, recomputed {b}")
    same = recomputed == signed
    audit.checks.append(("KPI mismatch" if not same else "KPIs recomputed bit for bit", same,
                         "; ".join(audit.mismatches[:3]) or f"{sum(map(len, recomputed))} attainments equal"))


@dataclass
class InclusionProof:
    period: str
    device: str
    evidence_root: str
    leaf_data: str
    leaf: str
    proof: list[str]
    verified: bool


def prove_device(bundle_path: str | Path, device_id: str) -> InclusionProof:
    """Proof that one device's inventory row and events are in the evidence a report committed to.
    A customer checks it with `verify_inclusion` against the on-chain evidenceRoot alone."""
    loaded = load_bundle(bundle_path)
    w1 = period_bounds(loaded.terms, loaded.bundle.label)[1]
    w0 = evidence_start(loaded.terms, loaded.bundle.label)  # the commitment's window
    leaves = evidence_leaves(loaded.terms, loaded.evidence, w0, w1)
    name = f"device:{device_id}"
    if name not in leaves.names:
        raise BundleError(f"device {device_id} is not in the evidence of {loaded.bundle.label}")
    data = _leaf_data(loaded, device_id, w0, w1)
    proof = leaves.proof(name)
    root = leaves.root
    return InclusionProof(loaded.bundle.label, device_id, "0x" + root.hex(), "0x" + data.hex(),
                          "0x" + leaf_hash(data).hex(), ["0x" + p.hex() for p in proof],
                          verify_proof(proof, root, leaf_hash(data)))


def _leaf_data(loaded: Any, device_id: str, w0: int, w1: int) -> bytes:
    from oracle.evidence.commitment import device_leaf_data
    from oracle.evidence.load import window_events
    from oracle.evidence.schema import NO_END, STATES

    ev = loaded.evidence
    i = ev.device_ids.index(device_id)
    dev, ts, state = window_events(ev, w0, w1)
    mine = dev == i
    events = [(int(t), STATES[int(s)]) for t, s in zip(ts[mine], state[mine], strict=True)]
    retired = int(ev.retired[i])
    return device_leaf_data(device_id, loaded.terms.sites[int(ev.device_site[i])].id, int(ev.device_weight[i]),
                            int(ev.deployed[i]), None if retired == NO_END else retired, events)


def verify_inclusion(proof: InclusionProof, onchain_root: str) -> bool:
    """Check a device's inclusion proof against the evidenceRoot read from the chain."""
    data = bytes.fromhex(proof.leaf_data[2:])
    return verify_proof([bytes.fromhex(p[2:]) for p in proof.proof], bytes.fromhex(onchain_root[2:]),
                        leaf_hash(data))


def write_report(audit: Audit, out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "audit.md", out / "audit.json"
    md.write_text(audit.to_markdown())
    js.write_text(json.dumps(audit.to_json_dict(), indent=2, sort_keys=True) + "\n")
    return md, js


def terms_from_store(store: str | Path, terms_hash_hex: str) -> Terms:
    """The terms the agreement was signed under, from any intact bundle in the store whose
    terms hash is the on-chain termsHash (the auditor needs nothing but the store and the chain)."""
    from oracle.core.terms import parse_terms_bytes, terms_hash
    from oracle.evidence.bundle import SUFFIX, TERMS_FILE, open_bundle

    for path in sorted(p for p in Path(store).iterdir() if p.is_file() and p.name.endswith(SUFFIX)):
        try:
            bundle = open_bundle(store, path.name.removesuffix(SUFFIX))
            if bundle.manifest.get("terms_hash") != terms_hash_hex:
                continue
            terms = parse_terms_bytes(bundle.read(TERMS_FILE))
        except (BundleError, TermsError, UnicodeDecodeError):
            continue
        if terms_hash(terms) == terms_hash_hex:
            return terms
    raise BundleError(f"no bundle in {store} holds terms with hash {terms_hash_hex}")
