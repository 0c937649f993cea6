"""Judging a proposed report before it pays: fetch the evidence bundle it commits to (from a
folder, or from the vendor's API) and replay it exactly as `slacomp audit` does. The watcher
(`slacomp watch`) disputes a proposal whose verdict is not `ok`, with `reason` (the first
discrepancy) as the dispute's reason; an arbiter (`slacomp arbitrate`) signs the attainments the
replay recomputed."""
from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from oracle.engine.replay import recompute
from oracle.evidence.bundle import BundleError, find_bundles, import_bundle, load_bundle
from oracle.verify.audit import PeriodAudit, audit_period


@dataclass(frozen=True)
class Proposal:
    """A report proposed on-chain and still open: what the oracles signed for `period`."""

    period: int
    label: str
    revision: int
    evidence_root: str  # 0x-prefixed hex
    attainments: list[list[int]]  # per objective, per subject, basis points


@dataclass(frozen=True)
class Verdict:
    """The replay of one proposal: `ok` when the bundle is intact, commits to the proposal's root,
    and recomputes every attainment bit for bit; otherwise `reason` names the first discrepancy."""

    proposal: Proposal
    ok: bool
    reason: str
    bundle: str | None

    @classmethod
    def of(cls, proposal: Proposal, audit: PeriodAudit) -> Verdict:
        problem = audit.first_problem()
        reason = f"period {proposal.period} ({proposal.label}) revision {proposal.revision}: {problem}" \
            if problem else "KPIs recomputed bit for bit"
        return cls(proposal, problem is None, reason, audit.bundle)


class FetchError(RuntimeError):
    """The bundle source could not be read (network, HTTP status): no verdict either way."""


@dataclass(frozen=True)
class BundleSource:
    """Where a proposal's evidence is published: a folder laid out as a bundle store (read in
    place), or the base URL of the vendor's API (`/v1/agreements/{address}/periods/{n}/evidence`,
    with the customer's API key), whose downloads are kept in `cache` as a bundle store."""

    location: str
    cache: Path
    api_key: str | None = None
    timeout_s: float = 30.0

    @property
    def is_url(self) -> bool:
        return self.location.startswith(("http://", "https://"))

    def store_for(self, agreement: str, proposal: Proposal) -> Path:
        """The bundle store to replay `proposal` from, after fetching its bundle when remote."""
        if not self.is_url:
            return Path(self.location)
        if find_bundles(self.cache, proposal.evidence_root):
            return self.cache
        url = f"{self.location.rstrip('/')}/v1/agreements/{agreement}/periods/{proposal.period}/evidence"
        request = urllib.request.Request(url, headers={"X-API-Key": self.api_key} if self.api_key else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                data = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # nothing published for this period: the replay says "evidence missing"
                return self.cache
            raise FetchError(f"GET {url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise FetchError(f"GET {url}: {exc}") from None
        import_bundle(self.cache, data)  # BundleError: the published bundle is not intact
        return self.cache


def judge(source: BundleSource, agreement: str, proposal: Proposal) -> Verdict:
    """Replay `proposal` from its published bundle (FetchError when the source is unreachable)."""
    try:
        store = source.store_for(agreement, proposal)
    except BundleError as exc:
        audit = PeriodAudit(proposal.period, proposal.label, proposal.evidence_root, None,
                            [("evidence tampered", False, f"published bundle: {exc}")])
        return Verdict.of(proposal, audit)
    return Verdict.of(proposal, audit_period(store, proposal.period, proposal.label,
                                             proposal.evidence_root, proposal.attainments))


def resolved_attainments(store: str | Path, evidence_root: str) -> list[list[int]]:
    """What an arbiter signs: the attainments recomputed from the first intact bundle of `store`
    whose evidence commits to `evidence_root` (BundleError when there is none)."""
    for path in find_bundles(store, evidence_root):
        try:
            result = recompute(load_bundle(path))
        except BundleError:
            continue
        if result.evidence_root.lower() == evidence_root.lower():
            return [[r.attainment_bps for r in o.results] for o in result.objectives]
    raise BundleError(f"no intact bundle in {store} commits to evidence root {evidence_root}")
