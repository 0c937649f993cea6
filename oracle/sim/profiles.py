"""Device profiles of the simulator: how each kind of device reports, how busy it is over the
day and week, how often it fails and how long repairs take, and the SLA its estates sign."""
from __future__ import annotations

from dataclasses import dataclass

HOUR = 3600
DAY = 86_400

Curve = tuple[float, ...]  # 24 hourly values, local time


def _curve(points: dict[int, float]) -> Curve:
    """A 24-hour curve from a few (hour -> value) anchors, linearly interpolated (wraps)."""
    hours = sorted(points)
    out = []
    for h in range(24):
        lo = max((x for x in hours if x <= h), default=hours[-1] - 24)
        hi = min((x for x in hours if x > h), default=hours[0] + 24)
        v_lo, v_hi = points[lo % 24], points[hi % 24]
        out.append(round(v_lo + (v_hi - v_lo) * (h - lo) / (hi - lo), 4))
    return tuple(out)


@dataclass(frozen=True)
class Profile:
    """Defaults for one kind of device. Occupancy curves give, per local hour, the probability
    that a device is in use (weekday / weekend-or-holiday); sessions arrive to match them."""

    name: str
    site_prefix: str
    heartbeat_s: int
    stale_after: str  # terms duration; > 3 heartbeats so a healthy device is never "unknown"
    occupancy_weekday: Curve
    occupancy_weekend: Curve
    session_mean_s: float
    failure_rate_per_h: float  # faults per device-hour (mean of the per-device rates)
    mttr_weekday_h: float  # mean time to repair of faults starting on a working day
    mttr_weekend_h: float  # ... starting on a Saturday, Sunday or public holiday
    dropout_rate_per_h: float  # connectivity drop-outs per device-hour
    dropout_mean_s: float
    zones: tuple[str, ...]
    business_hours: tuple[str, ...]  # YAML flow mappings ("" = 24x7), assigned to sites round-robin
    site_fee: int
    rapid_share: float  # share of devices with weight 2 (e.g. rapid chargers)


EV_CHARGER = Profile(
    name="ev_charger", site_prefix="cp", heartbeat_s=15 * 60, stale_after="1h",
    occupancy_weekday=_curve({0: 0.05, 5: 0.04, 8: 0.35, 10: 0.3, 13: 0.35, 17: 0.45, 19: 0.4, 22: 0.12}),
    occupancy_weekend=_curve({0: 0.05, 6: 0.03, 10: 0.3, 14: 0.4, 18: 0.3, 22: 0.08}),
    session_mean_s=90 * 60, failure_rate_per_h=1 / 1000, mttr_weekday_h=6.0, mttr_weekend_h=18.0,
    dropout_rate_per_h=1 / 600, dropout_mean_s=20 * 60,
    zones=("Europe/London", "Europe/Dublin", "Europe/Paris"),
    business_hours=("", '{mon-fri: "07:00-20:00", sat: "08:00-18:00"}', '{daily: "06:00-23:00"}'),
    site_fee=250, rapid_share=0.25,
)

TICKET_BARRIER = Profile(
    name="ticket_barrier", site_prefix="stn", heartbeat_s=5 * 60, stale_after="20m",
    # in_use: gate held open (accessible gate, staff override, crowd control), peaks at rush hours
    occupancy_weekday=_curve({0: 0.01, 5: 0.02, 7: 0.25, 9: 0.1, 12: 0.06, 16: 0.12, 18: 0.25, 20: 0.05}),
    occupancy_weekend=_curve({0: 0.01, 8: 0.03, 12: 0.08, 16: 0.08, 21: 0.02}),
    session_mean_s=6 * 60, failure_rate_per_h=1 / 700, mttr_weekday_h=3.0, mttr_weekend_h=9.0,
    dropout_rate_per_h=1 / 900, dropout_mean_s=10 * 60,
    zones=("Europe/London",),
    business_hours=('{mon-sat: "05:00-24:00", sun: "07:00-23:00"}', '{daily: "06:00-24:00"}'),
    site_fee=400, rapid_share=0.0,
)

SMART_METER = Profile(
    name="smart_meter", site_prefix="bldg", heartbeat_s=30 * 60, stale_after="2h",
    occupancy_weekday=tuple([0.0] * 24), occupancy_weekend=tuple([0.0] * 24),
    session_mean_s=1.0, failure_rate_per_h=1 / 4000, mttr_weekday_h=24.0, mttr_weekend_h=60.0,
    dropout_rate_per_h=1 / 300, dropout_mean_s=45 * 60,
    zones=("Europe/London", "Europe/Berlin"),
    business_hours=("",),
    site_fee=50, rapid_share=0.0,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (EV_CHARGER, TICKET_BARRIER, SMART_METER)}


def objectives_yaml(profile: Profile, devices_per_site: int) -> list[str]:
    """The objectives block of the profile's terms (YAML lines), in on-chain order."""
    tickets = [
        "  - {id: response, kpi: ticket_response, scope: estate, targets: {P1: 1h, P2: 4h},"
        " target_bps: 9000, credits: [{below_bps: 9000, credit_bps: 500}]}",
        "  - {id: resolution, kpi: ticket_resolution, scope: estate, targets: {P1: 24h, P2: 3d},"
        " target_bps: 8500, credits: [{below_bps: 8500, credit_bps: 1000}]}",
    ]
    uptime = ("  - {id: uptime, kpi: device_uptime, scope: estate, target_bps: 9800,"
              " credits: [{below_bps: 9800, credit_bps: 1000}, {below_bps: 9500, credit_bps: 3000}]}")
    if profile.name == "ticket_barrier":
        # "8 barriers: one broken is fine, two is a queue": keep half the gates available.
        need = max(1, devices_per_site // 2)
        return [
            f"  - {{id: avail, kpi: site_availability, scope: per_site, min_available: {need},"
            " target_bps: 9000, credits: [{below_bps: 9000, credit_bps: 10000}]}",
            "  - {id: maxdown, kpi: site_max_down, scope: per_site, max_down: 1,"
            " target_bps: 9500, credits: [{below_bps: 9500, credit_bps: 2500}]}",
            uptime, *tickets,
        ]
    if profile.name == "smart_meter":
        return [
            "  - {id: avail, kpi: site_availability, scope: per_site, min_available: 1,"
            " target_bps: 9000, credits: [{below_bps: 9000, credit_bps: 10000}]}",
            "  - {id: site_uptime, kpi: device_uptime, scope: per_site, target_bps: 9500,"
            " credits: [{below_bps: 9500, credit_bps: 2000}]}",
            uptime, *tickets,
        ]
    return [
        "  - {id: avail, kpi: site_availability, scope: per_site, min_available: 1,"
        " target_bps: 9000, credits: [{below_bps: 9000, credit_bps: 10000}]}",
        "  - {id: maxdown, kpi: site_max_down, scope: per_site, max_down: 1,"
        " target_bps: 9500, credits: [{below_bps: 9500, credit_bps: 2500}]}",
        uptime, *tickets,
    ]
