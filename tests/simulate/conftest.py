"""Simulated estates built once per session and read back with the real KPI engine."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from oracle.core.period import period_labels
from oracle.core.terms import Terms, load_terms
from oracle.engine.kpi import PeriodResult, compute_period
from oracle.evidence.load import Evidence, load_evidence
from oracle.sim.simulate import SimParams, simulate


@dataclass
class Run:
    """A simulated folder and what the engine makes of it."""

    out: Path
    params: SimParams
    terms: Terms
    evidence: Evidence
    results: dict[str, PeriodResult]
    truth: dict[str, Any]

    def csv(self, name: str) -> pl.DataFrame:
        return pl.read_csv(self.out / "evidence" / name, infer_schema=False)

    def met(self, label: str, objective: str) -> dict[str, bool]:
        o = next(o for o in self.results[label].objectives if o.id == objective)
        return {r.subject: r.met for r in o.results}


def run_simulation(out: Path, params: SimParams) -> Run:
    simulate(params, out)
    terms = load_terms(out / "terms.yaml")
    evidence = load_evidence(out / "evidence", terms)
    results = {label: compute_period(terms, evidence, label) for label in period_labels(terms)}
    return Run(out, params, terms, evidence, results, json.loads((out / "truth.json").read_text()))


# The main estate: EV chargers, a quarter, two sites with long outages.
MAIN = SimParams(sites=24, devices_per_site=4, months=3, start="2026-10", seed=11, bad_sites=2)


@pytest.fixture(scope="session")
def main_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_simulation(tmp_path_factory.mktemp("sim-main"), MAIN)
