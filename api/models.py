"""Request and response models of the API (the OpenAPI schema at /docs is generated from them).
Amounts are decimal strings of the token's smallest units (`*_raw`) and of whole token units."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ADDRESS = r"^0x[0-9a-fA-F]{40}$"
Address = Field(pattern=ADDRESS, examples=["0x5FbDB2315678afecb367f032d93F642f64180aa3"])


class Amount(BaseModel):
    raw: str = Field(description="smallest units (integer, as a string)")
    units: str | None = Field(description="token units, e.g. '1250.000000' (None if decimals unknown)")

    @classmethod
    def of(cls, value: int, decimals: int | None) -> Amount:
        """`value` smallest units, and in token units when the decimals are known."""
        if decimals is None:
            return cls(raw=str(value), units=None)
        whole, frac = divmod(value, 10**decimals)
        return cls(raw=str(value), units=f"{whole}.{frac:0{decimals}d}" if decimals else str(whole))


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    chain: dict[str, Any]
    database: dict[str, Any]


class AgreementSummary(BaseModel):
    address: str
    vendor: str
    customer: str
    factory: str
    terms_hash: str
    block: int
    tx_hash: str


class OracleSet(BaseModel):
    oracles: list[str]
    threshold: int


class Schedule(BaseModel):
    monthly_fee: Amount
    credit_cap_bps: int
    site_fees: list[Amount]
    objectives: list[dict[str, Any]]
    periods: list[dict[str, Any]]
    max_credit_per_period: Amount


class AgreementDetail(BaseModel):
    address: str
    chain_id: int
    vendor: str
    customer: str
    asset: dict[str, Any]
    escrow_balance: Amount
    reserve: Amount
    withdrawable: Amount
    claimable: Amount
    debt: Amount
    next_period: int
    period_count: int
    oracles: OracleSet
    terms_hash: str
    terms: dict[str, Any] | None = Field(description="canonical terms (None: not registered with this service)")
    key: str = Field(description="the agreement's key in the oracle database")
    schedule: Schedule


class TermsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    terms: str = Field(min_length=1, max_length=1_000_000, description="the terms file (YAML, schema slacomp/v1)")


class TermsResult(BaseModel):
    agreement: str
    terms_hash: str
    canonical: str = Field(description="the canonical JSON bytes that are hashed")
    normalized: dict[str, Any]
    periods: list[dict[str, Any]]


class CreateAgreement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    terms: str = Field(min_length=1, max_length=1_000_000)
    customer: str = Address
    asset: str = Field(default="0x" + "00" * 20, pattern=ADDRESS, description="ERC-20, or zero for native ETH")
    oracles: list[Annotated[str, Field(pattern=ADDRESS)]] = Field(min_length=1, max_length=32)
    threshold: int = Field(ge=1, le=32)
    factory: str | None = Field(default=None, pattern=ADDRESS, description="default: the first configured factory")


class Created(BaseModel):
    address: str
    vendor: str
    customer: str
    terms_hash: str
    tx_hash: str
    block: int
    gas_used: int


class RowError(BaseModel):
    row: int = Field(description="1-based position in the batch (CSV: data row; the header is line 1)")
    field: str
    reason: str


class IngestOutcome(BaseModel):
    kind: str
    rows: int
    accepted: int
    duplicates: int
    quarantined: int
    late: int
    released: int
    skipped: bool = Field(description="this exact batch was ingested before")
    errors: list[RowError]


class SubjectStatus(BaseModel):
    subject: str
    good_s: int
    counted_s: int
    bad_s: int
    attainment_bps: int
    target_bps: int
    met: bool
    expected_counted_s: int | None
    budget_total_s: int
    budget_s: int | None
    budget_left_pct: float | None
    burn_rate: float | None
    days_left: float | None
    credit: Amount
    state: Literal["green", "amber", "red"]


class ObjectiveStatus(BaseModel):
    id: str
    kpi: str
    scope: str
    target_bps: int
    state: Literal["green", "amber", "red"]
    results: list[SubjectStatus]


class SettledPeriod(BaseModel):
    period: int
    label: str | None
    credit: Amount
    paid: Amount
    tx_hash: str
    block: int


class Status(BaseModel):
    agreement: str
    label: str
    start: str
    end: str
    as_of: str
    evidence_root: str
    state: Literal["green", "amber", "red"]
    credit_so_far: Amount
    currency: str
    objectives: list[ObjectiveStatus]
    settled: list[SettledPeriod]


class BandPoint(BaseModel):
    t: str
    p05_s: float
    p50_s: float
    p95_s: float
    p05_pct: float | None = Field(description="% of the period's error budget (None: the budget is zero)")
    p50_pct: float | None
    p95_pct: float | None


class BurnSeries(BaseModel):
    subject: str
    budget_total_s: int
    bad_s: list[int]
    burn_pct: list[float | None]
    forecast: list[BandPoint] | None = Field(
        default=None, description="with forecast=true: budget used from as_of to period end, forecast percentiles "
                                  "(None for ticket KPIs)")


class BurnObjective(BaseModel):
    id: str
    kpi: str
    scope: str
    target_bps: int
    series: list[BurnSeries]


class Burn(BaseModel):
    label: str
    start: str
    end: str
    as_of: str
    marks: list[str]
    objectives: list[BurnObjective]


class AttainmentInterval(BaseModel):
    p05: int
    p50: int
    p95: int


class SubjectForecast(BaseModel):
    subject: str
    attainment_bps: int = Field(description="so far")
    target_bps: int
    p_meet: float = Field(ge=0, le=1, description="probability that the period ends at or above the target")
    attainment_interval_bps: AttainmentInterval = Field(description="final attainment: 5th, 50th, 95th percentile")
    expected_credit: Amount = Field(description="mean credit over the runs (before the agreement's credit cap)")
    credit_if_missed: Amount = Field(description="credit at the first tier below the target")
    status: Literal["lost", "at_risk", "on_track"]


class ObjectiveForecast(BaseModel):
    id: str
    kpi: str
    scope: str
    target_bps: int
    results: list[SubjectForecast]


class FaultShift(BaseModel):
    objective: str
    subject: str
    p_meet: float
    p_meet_if_fixed: float


class OpenFault(BaseModel):
    device: str
    site: str
    down_since: str
    expected_credit_saved: Amount = Field(description="expected credit avoided if the device is repaired now")
    site_lost: bool = Field(description="every per-site objective of its site is already lost this period")
    subjects: list[FaultShift]


class Forecast(BaseModel):
    agreement: str
    label: str
    start: str
    end: str
    as_of: str
    sims: int
    seed: int
    currency: str
    model: dict[str, Any] = Field(description="the fitted model's summary (fit window, spell rate, durations)")
    objectives: list[ObjectiveForecast]
    priorities: list[OpenFault] = Field(description="open faults, most expected credit saved first")


class Signature(BaseModel):
    oracle_index: int
    signature: str
    signer: str | None


class ReportOut(BaseModel):
    period: int
    label: str | None
    payload: dict[str, Any] = Field(description="the EIP-712 Report the oracles signed")
    attainments: list[list[int]]
    digest: str
    signatures: list[Signature]
    credit: Amount
    tx_hash: str
    block: int
    event: dict[str, Any]


class Payout(BaseModel):
    kind: Literal["paid", "claimable", "claimed", "debt", "debt_repaid"]
    event: str
    period: int | None
    label: str | None
    amount: Amount
    to: str | None
    tx_hash: str
    block: int
    log_index: int


class Error(BaseModel):
    detail: Any
