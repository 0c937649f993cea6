"""The regulatory KPIs (nevi_uptime, pcpr_reliability) and objective windows: hand-worked cases
from issue 17, the window boundaries (a term's first months, a year later, a leap year), the
rule's minute rounding, the terms' canonical form, credits, and a brute-force sampler on
random histories."""
from __future__ import annotations

import json
import tempfile
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oracle.core.calendar import iso_utc
from oracle.core.period import evidence_start, period_bounds, window_bounds
from oracle.core.terms import TermsError, canonical_bytes, parse_terms, terms_hash
from oracle.engine import regulatory
from oracle.engine.compliance import compliance_report, percent
from oracle.engine.kpi import compute_period, measure_window
from oracle.engine.replay import freeze_period, recompute
from oracle.evidence.bundle import load_bundle
from oracle.evidence.load import load_evidence
from oracle.evidence.schema import STATES
from slacomp.cli import main
from tests.oracle.bruteforce import brute_force_regulatory
from tests.oracle.conftest import write_evidence

TERMS = """\
schema: slacomp/v1
agreement: cpo-2026
timezone: {tz}
currency: {{symbol: USDC, decimals: 6}}
monthly_fee: "5000"
telemetry: {{stale_after: {stale}}}
sites:
{sites}
objectives:
{objectives}
term: {{first_period: "{first}", periods: {periods}}}
"""
NEVI = ('  - {{id: nevi, kpi: nevi_uptime, scope: {scope}, window: {window}, target_bps: 9700, device_fee: "100",'
        ' credits: [{{below_bps: 9700, credit_bps: 10000}}]}}')
PCPR = ('  - {{id: pcpr, kpi: pcpr_reliability, scope: {scope}, window: {window}, target_bps: 9900,{extra}'
        ' credits: [{{below_bps: 9900, credit_bps: 1000}}]}}')
DEV = "device_id,site_id,weight,deployed_at,retired_at"


def terms_of(objectives: list[str], sites: tuple[str, ...] = ("  - {id: north}",), tz: str = "UTC",
             first: str = "2026-01", periods: int = 12, stale: str = "400d") -> str:
    return TERMS.format(tz=tz, stale=stale, sites="\n".join(sites), objectives="\n".join(objectives),
                        first=first, periods=periods)


def nevi(scope: str = "per_device", window: str = "trailing_12_months") -> str:
    text = NEVI.format(scope=scope, window=window)
    return text if scope == "per_device" else text.replace(' device_fee: "100",', "")


def pcpr(scope: str = "estate", window: str = "calendar_year", ineligible: str | None = None) -> str:
    return PCPR.format(scope=scope, window=window, extra=f" ineligible: {ineligible}," if ineligible else "")


# --------------------------------------------------------------------------- NEVI, hand-worked

# One port, deployed before the term. An outage in December 2025 (before the term: never
# counted), then faulted 2026-03-10T00:00Z to 2026-03-13T00:00Z (3 days = 4,320 minutes), of
# which 2026-03-11 (1 day = 1,440 minutes) is excused by a utility outage.
PORT = [("CP-17/1", "north", 1, "2025-11-01T00:00:00Z", "")]
PORT_EVENTS = [("2025-12-05T00:00:00Z", "CP-17/1", "faulted"), ("2025-12-06T00:00:00Z", "CP-17/1", "available"),
               ("2026-03-10T00:00:00Z", "CP-17/1", "faulted"), ("2026-03-13T00:00:00Z", "CP-17/1", "available")]
PORT_EXCLUSIONS = [("2026-03-11T00:00:00Z", "2026-03-12T00:00:00Z", "site:north", "utility outage (grid)")]


@pytest.fixture
def port(tmp_path):
    return write_evidence(tmp_path / "ev", PORT, PORT_EVENTS, PORT_EXCLUSIONS)


def nevi_result(terms_yaml: str, folder: Path, label: str):
    terms = parse_terms(terms_yaml)
    return compute_period(terms, load_evidence(folder, terms), label).objective("nevi").results[0]


def test_nevi_port_down_three_days_one_excluded_is_99_452_percent(port):
    # ((525,600 - (4,320 - 1,440)) / 525,600) x 100 = 522,720 / 525,600 = 99.4520...%
    terms = parse_terms(terms_of([nevi()]))
    ev = load_evidence(port, terms)
    w0, w1 = window_bounds(terms, "trailing_12_months", "2026-12")
    (p,) = regulatory.nevi_ports(terms, ev, w0, w1)
    assert (p.window_min, p.outage_min, p.excluded_min, p.up_min) == (525_600, 4_320, 1_440, 522_720)
    assert percent(p.ratio) == "99.452"
    r = compute_period(terms, ev, "2026-12").objective("nevi").results[0]
    assert (r.subject, r.good_s, r.counted_s, r.attainment_bps, r.met, r.credit) == (
        "CP-17/1", 522_720 * 60, 525_600 * 60, 9945, True, 0)  # seconds: the rule's whole minutes


def test_trailing_window_at_the_start_of_a_term_covers_the_term_so_far(port):
    # The window never reaches before the term (2026-01): December 2025's outage is not counted,
    # and D is the port's minutes since the term's start.
    yaml = terms_of([nevi()])
    terms = parse_terms(yaml)
    jan = nevi_result(yaml, port, "2026-01")  # 31 days, no outage
    assert (jan.good_s, jan.counted_s, jan.attainment_bps) == (44_640 * 60, 44_640 * 60, 10_000)
    assert window_bounds(terms, "trailing_12_months", "2026-03")[0] == period_bounds(terms, "2026-01")[0]
    mar = nevi_result(yaml, port, "2026-03")  # 90 days = 129,600 minutes; (129,600 - 2,880) / 129,600
    assert (mar.good_s, mar.counted_s, mar.attainment_bps) == (126_720 * 60, 129_600 * 60, 9777)


def test_trailing_window_a_year_later_drops_the_oldest_month(port):
    yaml = terms_of([nevi()], periods=24)
    terms = parse_terms(yaml)
    assert iso_utc(window_bounds(terms, "trailing_12_months", "2027-02")[0]) == "2026-03-01T00:00:00Z"
    assert nevi_result(yaml, port, "2027-02").attainment_bps == 9945  # March 2026 still inside
    assert nevi_result(yaml, port, "2027-03").attainment_bps == 10_000  # [2026-04, 2027-04): no outage
    # calendar_year restarts in January: year to date
    assert iso_utc(window_bounds(terms, "calendar_year", "2027-03")[0]) == "2027-01-01T00:00:00Z"


def test_trailing_window_follows_the_agreements_zone(port):
    terms = parse_terms(terms_of([nevi()], tz="Europe/London", first="2025-01", periods=24))
    w0, w1 = window_bounds(terms, "trailing_12_months", "2026-07")
    assert (iso_utc(w0), iso_utc(w1)) == ("2025-07-31T23:00:00Z", "2026-07-31T23:00:00Z")  # BST midnights
    assert (w1 - w0) // 60 == 525_600


def test_leap_year_window_still_divides_by_525600(tmp_path):
    # 2028 has 527,040 minutes; the rule's D stays 525,600. Down one day: 524,160 / 525,600 = 99.726%
    folder = write_evidence(tmp_path / "ev", [("P1", "north", 1, "2027-12-01T00:00:00Z", "")],
                            [("2028-01-01T00:00:00Z", "P1", "available"), ("2028-02-29T00:00:00Z", "P1", "faulted"),
                             ("2028-03-01T00:00:00Z", "P1", "available")])
    r = nevi_result(terms_of([nevi()], first="2028-01"), folder, "2028-12")
    assert (r.good_s, r.counted_s, r.attainment_bps) == (524_160 * 60, 525_600 * 60, 9972)


def test_rule_minutes_round_outage_up_and_excluded_outage_down(tmp_path):
    # 61 s of outage -> 2 minutes; 59 s of it excused -> 0 minutes: never overstated by rounding
    folder = write_evidence(tmp_path / "ev", [("P1", "north", 1, "2026-01-01T00:00:00Z", "")],
                            [("2026-01-01T00:00:00Z", "P1", "available"), ("2026-01-02T00:00:00Z", "P1", "offline"),
                             ("2026-01-02T00:01:01Z", "P1", "available")],
                            [("2026-01-02T00:00:00Z", "2026-01-02T00:00:59Z", "device:P1", "vandalism")])
    terms = parse_terms(terms_of([nevi(window="period")]))
    ev = load_evidence(folder, terms)
    (p,) = regulatory.nevi_ports(terms, ev, *period_bounds(terms, "2026-01"))
    assert (p.outage_s, p.excluded_outage_s, p.outage_min, p.excluded_min, p.window_min) == (61, 59, 2, 0, 44_640)


def test_nevi_port_under_97_percent_earns_its_device_credit(tmp_path):
    # down 20 days of January alone: (44,640 - 28,800) / 44,640 = 35.48% -> device_fee 100 USDC
    folder = write_evidence(tmp_path / "ev", [("P1", "north", 1, "2026-01-01T00:00:00Z", "")],
                            [("2026-01-01T00:00:00Z", "P1", "faulted"), ("2026-01-21T00:00:00Z", "P1", "available")])
    terms = parse_terms(terms_of([nevi(window="period")]))
    result = compute_period(terms, load_evidence(folder, terms), "2026-01")
    r = result.objective("nevi").results[0]
    assert (r.attainment_bps, r.met, r.credit) == (3548, False, 100_000_000)
    assert result.total_credit == 100_000_000


# --------------------------------------------------------------------------- PCPR, hand-worked

# Calendar year 2026 (UTC), two rapid charge points.
# CP-A at `motorway` (24x7, 8,760 open hours): out of order 2026-02-10 00:00 to 02-13 01:00 = 73 h
#   -> (8,760 - 73) / 8,760 = 99.1666%.
# CP-B/1 at `retail`, open daily 08:00-20:00 (4,380 open hours): inoperative 06-01 18:00 to
#   06-03 10:00 (40 h on the wall clock, 2 + 12 + 2 = 16 h open) and UNKNOWN 07-01 08:00-12:00
#   (4 h, ineligible: reliable) -> (4,380 - 16) / 4,380 = 99.6347%.
# Network: (8,687/8,760 + 4,364/4,380) / 2 = 99.4006% -> 9940 bps (meets 99%).
# Were retail 24x7 it would be (8,687/8,760 + 8,720/8,760) / 2 = 99.3550% -> 9935.
# With `ineligible: not_counted`, CP-B/1 is 4,360 / 4,376 and the network 99.4005% -> 9940.
SITES = ("  - {id: motorway}", '  - {id: retail, business_hours: {daily: "08:00-20:00"}}')
NETWORK = [("CP-A", "motorway", 1, "2025-12-01T00:00:00Z", ""), ("CP-B/1", "retail", 1, "2025-12-01T00:00:00Z", "")]
NETWORK_EVENTS = [
    ("2026-01-01T00:00:00Z", "CP-A", "available"), ("2026-02-10T00:00:00Z", "CP-A", "faulted"),
    ("2026-02-13T01:00:00Z", "CP-A", "available"),
    ("2026-01-01T00:00:00Z", "CP-B/1", "available"), ("2026-06-01T18:00:00Z", "CP-B/1", "unavailable"),
    ("2026-06-03T10:00:00Z", "CP-B/1", "available"), ("2026-07-01T08:00:00Z", "CP-B/1", "unknown"),
    ("2026-07-01T12:00:00Z", "CP-B/1", "in_use")]
NETWORK_EXCLUSIONS = [("2026-02-11T00:00:00Z", "2026-02-12T00:00:00Z", "device:CP-A", "vandalism (police report 4471)")]


@pytest.fixture
def network(tmp_path):
    return write_evidence(tmp_path / "net", NETWORK, NETWORK_EVENTS, NETWORK_EXCLUSIONS)


def test_pcpr_network_with_one_restricted_hours_site_is_99_400_percent(network):
    objectives = [pcpr(), pcpr("per_site").replace("id: pcpr", "id: pcpr_site"),
                  pcpr("per_device").replace("id: pcpr", "id: pcpr_dev")]
    terms = parse_terms(terms_of(objectives, SITES))
    result = compute_period(terms, load_evidence(network, terms), "2026-12")
    assert [(r.subject, r.attainment_bps, r.met) for r in result.objective("pcpr").results] == [("*", 9940, True)]
    assert [(r.subject, r.good_s, r.counted_s, r.attainment_bps) for r in result.objective("pcpr_site").results] == [
        ("motorway", 8_687 * 3600, 8_760 * 3600, 9916), ("retail", 4_364 * 3600, 4_380 * 3600, 9963)]
    assert [r.attainment_bps for r in result.objective("pcpr_dev").results] == [9916, 9963]
    exact = (Fraction(8_687, 8_760) + Fraction(4_364, 4_380)) / 2
    assert regulatory.ratio_bps(exact) == 9940 and percent(exact) == "99.400"


def test_pcpr_opening_hours_and_ineligible_choice_change_the_figure(network):
    all_day = (SITES[0], "  - {id: retail}")
    terms = parse_terms(terms_of([pcpr()], all_day))
    assert compute_period(terms, load_evidence(network, terms), "2026-12").objective("pcpr").results[0] \
        .attainment_bps == 9935
    terms = parse_terms(terms_of([pcpr(ineligible="not_counted")], SITES))
    ev = load_evidence(network, terms)
    w0, w1 = window_bounds(terms, "calendar_year", "2026-12")
    _, b = regulatory.pcpr_points(terms, ev, w0, w1, "not_counted")
    assert (b.open_s, b.working_s, b.not_working_s, b.ineligible_s, b.measured_s) == (
        4_380 * 3600, 4_360 * 3600, 16 * 3600, 4 * 3600, 4_376 * 3600)
    assert compute_period(terms, ev, "2026-12").objective("pcpr").results[0].attainment_bps == 9940


def test_pcpr_counts_offline_against_and_stale_as_ineligible(tmp_path):
    # 6 h offline (not working), 7 h available, then silence past stale_after (ineligible)
    folder = write_evidence(tmp_path / "ev", [("P1", "north", 1, "2026-01-01T00:00:00Z", "")],
                            [("2026-01-01T00:00:00Z", "P1", "offline"), ("2026-01-01T06:00:00Z", "P1", "available")])
    terms = parse_terms(terms_of([pcpr(window="period")], stale="7h"))
    ev = load_evidence(folder, terms)
    (p,) = regulatory.pcpr_points(terms, ev, *period_bounds(terms, "2026-01"))
    assert (p.working_s, p.not_working_s, p.ineligible_s) == (7 * 3600, 6 * 3600, 31 * 86400 - 13 * 3600)


# --------------------------------------------------------------------------- terms and commitment


def test_window_period_is_the_default_and_hashes_as_before():
    base = terms_of(["  - {id: up, kpi: device_uptime, scope: estate, target_bps: 9000,"
                     " credits: [{below_bps: 9000, credit_bps: 100}]}"])
    explicit = base.replace("scope: estate,", "scope: estate, window: period,")
    assert terms_hash(parse_terms(base)) == terms_hash(parse_terms(explicit))
    assert b"window" not in canonical_bytes(parse_terms(base))
    trailing = base.replace("scope: estate,", "scope: estate, window: trailing_12_months,")
    assert b'"window":"trailing_12_months"' in canonical_bytes(parse_terms(trailing))


@pytest.mark.parametrize("objective, field", [
    (nevi(window="rolling_year"), "objectives[0].window"),
    (nevi(scope="per_device") + "\n", None),
    (nevi().replace("window:", "ineligible: reliable, window:"), "objectives[0].ineligible"),
    (pcpr(ineligible="maybe"), "objectives[0].ineligible"),
])
def test_bad_window_or_ineligible_names_the_field(objective, field):
    if field is None:
        parse_terms(terms_of([objective]))
        return
    with pytest.raises(TermsError) as err:
        parse_terms(terms_of([objective]))
    assert err.value.field == field


def test_trailing_window_commits_to_its_whole_history_and_replays_from_its_bundle(port, tmp_path):
    period_only = parse_terms(terms_of([nevi(window="period")]))
    trailing_yaml = terms_of([nevi()])
    trailing = parse_terms(trailing_yaml)
    assert evidence_start(period_only, "2026-05") == period_bounds(period_only, "2026-05")[0]
    assert evidence_start(trailing, "2026-05") == period_bounds(trailing, "2026-01")[0]
    may_alone = compute_period(period_only, load_evidence(port, period_only), "2026-05")
    files = {p.name: p.read_bytes() for p in port.iterdir()}
    bundle, result = freeze_period(tmp_path / "store", trailing_yaml.encode(), files, "2026-05")
    assert may_alone.objective("nevi").results[0].attainment_bps == 10_000
    assert result.objective("nevi").results[0].attainment_bps == 9_867  # Jan-May: (217,440 - 2,880) / 217,440 minutes
    assert result.evidence_root != may_alone.evidence_root  # March's outage is in the commitment
    again = recompute(load_bundle(bundle.path))
    assert again == result


# --------------------------------------------------------------------------- brute force


@st.composite
def histories(draw: st.DrawFn, step: int, span_s: int = 2 * 86400) -> tuple[
        str, list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[object, ...]], int, int]:
    """Small random histories over a window of `span_s` seconds in January 2026 whose every
    boundary is a multiple of `step` seconds (so sampling every `step` is exact)."""
    hours = draw(st.sampled_from([None, '{daily: "08:00-20:00"}', '{mon-fri: ["07:30-12:00", "13:00-19:45"]}']))
    tz = draw(st.sampled_from(["UTC", "Europe/London", "America/New_York"]))
    sites = ("  - {id: a}", "  - {id: b" + (f", business_hours: {hours}" if hours else "") + f", timezone: {tz}}}")
    stale = draw(st.sampled_from(["30m", "2h", "3d"]))
    yaml = terms_of([nevi(window="period"), pcpr(window="period")], sites, stale=stale)
    w0 = period_bounds(parse_terms(yaml), "2026-01")[0] + 5 * 86400
    span = span_s // step
    at = st.integers(-span // 4, span).map(lambda k: w0 + k * step)
    devices, events, exclusions = [], [], []
    for i in range(draw(st.integers(1, 3))):
        dep = draw(st.one_of(st.just(w0 - 86400), at))
        ret = draw(st.one_of(st.just(None), at.filter(lambda t, dep=dep: t > dep)))
        devices.append((f"CP-{i}/1", draw(st.sampled_from(["a", "b"])), 1, iso_utc(dep), iso_utc(ret) if ret else ""))
        for t in sorted(set(draw(st.lists(at, max_size=6)))):
            events.append((iso_utc(t), f"CP-{i}/1", draw(st.sampled_from(STATES))))
    for _ in range(draw(st.integers(0, 2))):
        a = draw(at)
        b = draw(at.filter(lambda t, a=a: t > a))
        exclusions.append((iso_utc(a), iso_utc(b), draw(st.sampled_from(["*", "site:a", "site:b", "device:CP-0/1"])),
                           "cause"))
    return yaml, devices, events, exclusions, w0, w0 + span_s


SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _compare(h: tuple[str, list, list, list, int, int], step: int) -> None:  # type: ignore[type-arg]
    yaml, devices, events, exclusions, w0, w1 = h
    with tempfile.TemporaryDirectory() as d:
        terms = parse_terms(yaml)
        ev = load_evidence(write_evidence(Path(d), devices, events, exclusions), terms)
    truth = brute_force_regulatory(terms, ev, w0, w1, step)
    for p in regulatory.nevi_ports(terms, ev, w0, w1):
        t = truth[p.device_id]
        assert (p.deployed_s, p.outage_s, p.excluded_outage_s) == (t["deployed"], t["outage"], t["excluded_outage"])
        assert (p.window_min, p.outage_min, p.excluded_min) == (
            t["deployed"] // 60, -(-t["outage"] // 60), t["excluded_outage"] // 60)
    for q in regulatory.pcpr_points(terms, ev, w0, w1):
        t = truth[q.device_id]
        assert (q.open_s, q.working_s, q.not_working_s, q.ineligible_s) == (
            t["open"], t["working"], t["not_working"], t["ineligible"])
    result = compute_period(terms, ev, "2026-01")  # the engine's subjects agree with the ports
    assert all(0 <= r.attainment_bps <= 10_000 for o in result.objectives for r in o.results)


@SETTINGS
@given(histories(step=60))
def test_regulatory_ports_equal_a_minute_sampling_brute_force(h):
    _compare(h, 60)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(step=20, span_s=6 * 3600))
def test_regulatory_ports_equal_brute_force_off_the_minute(h):
    """Boundaries off the minute (multiples of 20 s): the rule's rounding of each port's seconds."""
    _compare(h, 20)


def test_network_figure_is_the_mean_of_port_ratios():
    ports = [regulatory.PcprPoint("a", "s", 100, 99, 1, 0, True), regulatory.PcprPoint("b", "s", 10, 5, 5, 0, True),
             regulatory.PcprPoint("c", "s", 0, 0, 0, 0, True)]  # c: nothing measured, not in the mean
    f = regulatory.figure(list(ports))
    assert (f.good, f.counted, f.ports, f.attainment_bps) == (104, 110, 2, 7450)  # (0.99 + 0.5) / 2


# --------------------------------------------------------------------------- slacomp compliance


def test_compliance_writes_the_regulators_report(network, tmp_path, capsys):
    terms_file = tmp_path / "terms.yaml"
    terms_file.write_text(terms_of([pcpr(), nevi()], SITES))
    out = tmp_path / "report"
    assert main(["compliance", str(terms_file), "--evidence", str(network), "--year", "2026", "--out", str(out)]) == 0
    data = json.loads((out / "compliance-cpo-2026-2026.json").read_text())
    md = (out / "compliance-cpo-2026-2026.md").read_text()
    assert data["pcpr"]["network"] == {"percent": "99.400", "bps": 9940, "exact": data["pcpr"]["network"]["exact"]}
    assert data["pcpr"]["met"] is True and data["pcpr"]["charge_points_operated"] == 2
    ports = {p["port"]: p for p in data["nevi"]["ports"]}
    # CP-A: 73 h = 4,380 outage minutes, 1,440 excused -> (525,600 - 2,940) / 525,600 = 99.440%
    assert (ports["CP-A"]["outage_minutes"], ports["CP-A"]["excluded_outage_minutes"],
            ports["CP-A"]["uptime"]["percent"]) == (4_380, 1_440, "99.440")
    assert ports["CP-B/1"]["uptime"]["percent"] == "99.497"  # 40 h + 4 h unknown = 2,640 minutes
    assert data["excluded_outages"] == [{"start": "2026-02-11T00:00:00Z", "end": "2026-02-12T00:00:00Z",
                                         "scope": "device:CP-A", "cause": "vandalism (police report 4471)", "line": 2,
                                         "ports": [{"port": "CP-A", "excused_outage_s": 86_400}]}]
    assert [m["month"] for m in data["nevi"]["monthly"]] == [f"2026-{m:02d}" for m in range(1, 13)]
    assert data["nevi"]["monthly"][1]["ports_at_or_below_minimum"] == ["CP-A"]  # Jan-Feb: 96.539%
    assert "| `CP-A` | motorway | 525,600 | 4,380 | 1,440 | 99.440 |" in md
    assert "vandalism (police report 4471)" in md and "**99.400%** (9940 bps): meets" in md
    # the December settlement and the report measure the same evidence
    terms = parse_terms(terms_file.read_text())
    december = compute_period(terms, load_evidence(network, terms), "2026-12")
    assert december.evidence_root == data["evidence_root"]
    assert december.objective("pcpr").results[0].attainment_bps == 9940
    assert compliance_report(terms, load_evidence(network, terms), 2026).to_json() == \
        (out / "compliance-cpo-2026-2026.json").read_text()


def test_compliance_for_a_year_outside_the_term_is_a_user_error(network, tmp_path, capsys):
    terms_file = tmp_path / "terms.yaml"
    terms_file.write_text(terms_of([pcpr()], SITES))
    assert main(["compliance", str(terms_file), "--evidence", str(network), "--year", "2030"]) == 2
    assert "year: 2030 is outside the term 2026-01..2026-12" in capsys.readouterr().err


def test_a_commercial_kpi_with_a_longer_window_measures_the_whole_window(network):
    """window works for every KPI: device_uptime over the calendar year equals the engine's
    measurement of [1 January, end of the period), with the period's subjects and fees."""
    objective = ('  - {id: up, kpi: device_uptime, scope: per_device, window: calendar_year, target_bps: 9950,'
                 ' device_fee: "7", credits: [{below_bps: 9950, credit_bps: 10000}]}')
    terms = parse_terms(terms_of([objective], SITES))
    ev = load_evidence(network, terms)
    result = compute_period(terms, ev, "2026-03")
    whole = measure_window(terms, ev, *window_bounds(terms, "calendar_year", "2026-03"))
    month = measure_window(terms, ev, *period_bounds(terms, "2026-03"))
    assert [(r.subject, r.good_s, r.counted_s) for r in result.objective("up").results] == [
        (d, *whole[("up", d)]) for d in ("CP-A", "CP-B/1")]
    a = result.objective("up").results[0]  # CP-A: 73 h faulted in February, 24 h of it excluded (remove)
    assert whole[("up", "CP-A")][1] - whole[("up", "CP-A")][0] == 73 * 3600 - 24 * 3600
    assert month[("up", "CP-A")][0] == month[("up", "CP-A")][1]  # March alone is clean
    assert (a.met, a.credit) == (False, 7_000_000)


@st.composite
def two_month_histories(draw: st.DrawFn) -> tuple[str, list[tuple[object, ...]], list[tuple[object, ...]],
                                                   list[tuple[object, ...]]]:
    """A term starting 2026-01 with a few ports whose events fall anywhere in January-February
    (minute-aligned): the trailing window at 2026-02 is the two months (less history)."""
    hours = draw(st.sampled_from([None, '{daily: "08:00-20:00"}']))
    sites = ("  - {id: a}", "  - {id: b" + (f", business_hours: {hours}" if hours else "") + "}")
    yaml = terms_of([nevi(), nevi("estate").replace("id: nevi", "id: nevi_net"), pcpr(window="trailing_12_months"),
                     pcpr("per_site", "trailing_12_months").replace("id: pcpr", "id: pcpr_site")], sites,
                    stale=draw(st.sampled_from(["6h", "10d"])))
    t0 = period_bounds(parse_terms(yaml), "2026-01")[0]
    at = st.integers(-2 * 1440, 59 * 1440).map(lambda m: t0 + m * 60)
    devices, events, exclusions = [], [], []
    for i in range(draw(st.integers(2, 3))):  # two at least: a mean differs from a sum
        dep = draw(st.one_of(st.just(t0 - 86400), at))
        devices.append((f"P{i}", draw(st.sampled_from(["a", "b"])), 1, iso_utc(dep), ""))
        for t in sorted(set(draw(st.lists(at, max_size=5)))):
            events.append((iso_utc(t), f"P{i}", draw(st.sampled_from(STATES))))
    if draw(st.booleans()):
        a = draw(at)
        exclusions.append((iso_utc(a), iso_utc(a + draw(st.integers(1, 3 * 1440)) * 60), "site:a", "utility"))
    return yaml, devices, events, exclusions


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(two_month_histories())
def test_trailing_window_attainments_equal_the_brute_force_means(h):
    yaml, devices, events, exclusions = h
    terms = parse_terms(yaml)
    with tempfile.TemporaryDirectory() as d:
        ev = load_evidence(write_evidence(Path(d), devices, events, exclusions), terms)
    w0, w1 = window_bounds(terms, "trailing_12_months", "2026-02")
    assert w0 == period_bounds(terms, "2026-01")[0]
    truth = brute_force_regulatory(terms, ev, w0, w1)

    def nevi_ratio(t: dict[str, int]) -> Fraction | None:
        big_d = min(525_600, t["deployed"] // 60)
        net = -(-t["outage"] // 60) - t["excluded_outage"] // 60
        return Fraction(max(0, big_d - net), big_d) if big_d else None

    def pcpr_ratio(t: dict[str, int]) -> Fraction | None:
        measured = t["working"] + t["ineligible"] + t["not_working"]
        return Fraction(t["working"] + t["ineligible"], measured) if measured else None

    def mean_bps(ratios: list[Fraction | None]) -> int:
        counted = [r for r in ratios if r is not None]
        return regulatory.ratio_bps(sum(counted, Fraction(0)) / len(counted)) if counted else 10_000

    result = compute_period(terms, ev, "2026-02")
    site_of = {did: terms.sites[int(ev.device_site[i])].id for i, did in enumerate(ev.device_ids)}
    got = {(o.id, r.subject): r.attainment_bps for o in result.objectives for r in o.results}
    for did in ev.device_ids:
        assert got[("nevi", did)] == mean_bps([nevi_ratio(truth[did])])
    assert got[("nevi_net", "*")] == mean_bps([nevi_ratio(truth[d]) for d in ev.device_ids])
    assert got[("pcpr", "*")] == mean_bps([pcpr_ratio(truth[d]) for d in ev.device_ids])
    for s in ("a", "b"):
        assert got[("pcpr_site", s)] == mean_bps([pcpr_ratio(truth[d]) for d in ev.device_ids if site_of[d] == s])
