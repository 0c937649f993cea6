"""The KPI engine on frozen evidence: measure a period's files and freeze them with what was
measured (the oracle's close), and recompute a loaded bundle (the auditor's replay). Both run
`compute_period` on exactly the bytes a bundle holds."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from oracle.core.terms import parse_terms_bytes
from oracle.engine.kpi import PeriodResult, compute_period
from oracle.evidence.bundle import Bundle, LoadedBundle, Measured, write_bundle
from oracle.evidence.load import load_evidence


def measured(result: PeriodResult) -> Measured:
    """The figures of `result` a bundle's manifest records."""
    return Measured(result.terms_hash, result.evidence_root,
                    [[r.attainment_bps for r in o.results] for o in result.objectives], result.total_credit)


def freeze_period(store: str | Path, terms_bytes: bytes, files: dict[str, bytes], label: str,
                  meta: dict[str, Any] | None = None, durable: bool = True) -> tuple[Bundle, PeriodResult]:
    """Compute period `label` from exactly `files` (name -> canonical CSV bytes) and freeze them
    into a bundle recording the result (see oracle.evidence.bundle.write_bundle)."""
    terms = parse_terms_bytes(terms_bytes)
    result = compute_period(terms, load_evidence(files, terms), label)
    return write_bundle(store, terms_bytes, files, label, measured(result), meta, durable), result


def recompute(loaded: LoadedBundle) -> PeriodResult:
    """The KPI engine's result on a bundle: what an auditor checks against the report."""
    return compute_period(loaded.terms, loaded.evidence, loaded.bundle.label)
