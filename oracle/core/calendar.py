"""Calendar arithmetic in local time zones: period bounds, business-hours intervals and
interval algebra on integer UTC epoch seconds (all intervals half-open ``[start, end)``).

A local time of day is resolved to an instant (period bounds) as its first occurrence when
repeated (autumn fall-back), and as the jump instant when skipped (spring-forward gap).
Business hours are the instants at which the local clock *reads* a time inside them, so a
repeated hour counts twice and a skipped one not at all.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

Interval = tuple[int, int]
# Business hours: for each weekday (Monday = 0) a sorted tuple of disjoint [start, end)
# minute ranges within 0..1440.
WeekHours = tuple[tuple[tuple[int, int], ...], ...]

WEEK_24X7: WeekHours = tuple(((0, 1440),) for _ in range(7))
_LABEL = re.compile(r"^(\d{4})-(\d{2})$")


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _wall_seconds(t: int, tz: ZoneInfo) -> int:
    """The local wall-clock reading of instant t, as naive seconds since 1970-01-01."""
    local = datetime.fromtimestamp(t, tz)
    return t + int(local.utcoffset().total_seconds())  # type: ignore[union-attr]


def local_to_utc(day: date, minute: int, tz: ZoneInfo) -> int:
    """Instant at which the local clock of `tz` reads `day` + `minute` minutes (0..1440)."""
    naive = datetime(day.year, day.month, day.day) + timedelta(minutes=minute)
    t = int(naive.replace(tzinfo=tz, fold=0).timestamp())
    wall = int((naive - datetime(1970, 1, 1)).total_seconds())
    if _wall_seconds(t, tz) == wall:
        return t
    # Skipped by a forward jump: fold=0 read it with the pre-transition offset, which lands
    # after the jump. Find the jump instant: the first instant whose wall reading >= wall.
    lo = int(naive.replace(tzinfo=tz, fold=1).timestamp())
    hi = t
    if lo > hi:
        lo, hi = hi, lo
    while lo < hi:
        mid = (lo + hi) // 2
        if _wall_seconds(mid, tz) >= wall:
            hi = mid
        else:
            lo = mid + 1
    return lo


def parse_label(label: str) -> tuple[int, int]:
    """'YYYY-MM' -> (year, month); ValueError with a readable message otherwise."""
    m = _LABEL.match(label)
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"period {label!r} is not a calendar month written YYYY-MM")
    return int(m.group(1)), int(m.group(2))


def add_months(year: int, month: int, n: int) -> tuple[int, int]:
    k = year * 12 + (month - 1) + n
    return k // 12, k % 12 + 1


def month_bounds(tz_name: str, label: str) -> tuple[int, int]:
    """[start, end) in UTC epoch seconds of calendar month `label` in zone `tz_name`."""
    y, m = parse_label(label)
    ny, nm = add_months(y, m, 1)
    tz = zone(tz_name)
    return local_to_utc(date(y, m, 1), 0, tz), local_to_utc(date(ny, nm, 1), 0, tz)


def local_date(t: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(t, tz).date()


def _offset(t: int, tz: ZoneInfo) -> int:
    return int(datetime.fromtimestamp(t, tz).utcoffset().total_seconds())  # type: ignore[union-attr]


def offset_pieces(tz: ZoneInfo, t0: int, t1: int) -> list[tuple[int, int, int]]:
    """[t0, t1) cut at UTC-offset changes: (start, end, offset seconds) pieces. Assumes at most
    one change per 6 hours, which holds for every zone in the tz database."""
    step = 6 * 3600
    cuts = [t0]
    base = _offset(t0, tz)
    t = t0
    while t < t1:
        u = min(t + step, t1)
        if _offset(u, tz) != base:
            lo, hi = t + 1, u  # the first instant with another offset is in (t, u]
            while lo < hi:
                mid = (lo + hi) // 2
                if _offset(mid, tz) != base:
                    hi = mid
                else:
                    lo = mid + 1
            if lo < t1:
                cuts.append(lo)
            base = _offset(u, tz)
        t = u
    cuts.append(t1)
    return [(a, b, _offset(a, tz)) for a, b in zip(cuts, cuts[1:]) if a < b]


@lru_cache(maxsize=4096)
def business_intervals(tz_name: str, hours: WeekHours, t0: int, t1: int) -> tuple[Interval, ...]:
    """Sorted disjoint intervals within [t0, t1) during which the local clock of `tz_name`
    reads a weekday and time inside the weekly business hours. Exact across DST changes: a
    repeated local hour counts twice if inside the hours, a skipped one not at all."""
    if t1 <= t0:
        return ()
    if hours == WEEK_24X7:
        return ((t0, t1),)
    tz = zone(tz_name)
    epoch = date(1970, 1, 1)
    out: list[Interval] = []
    for p0, p1, off in offset_pieces(tz, t0, t1):
        w0, w1 = p0 + off, p1 + off  # wall-clock seconds, linear on this piece
        day = w0 // 86400
        while day * 86400 < w1:
            weekday = (epoch + timedelta(days=day)).weekday()
            for a, b in hours[weekday]:
                s = max(day * 86400 + a * 60, w0)
                e = min(day * 86400 + b * 60, w1)
                if s < e:
                    out.append((s - off, e - off))
            day += 1
    return tuple(merge(out))


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Union of intervals as a sorted list of disjoint, non-touching intervals."""
    out: list[Interval] = []
    for s, e in sorted(intervals):
        if s >= e:
            continue
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """Intersection of two sorted disjoint interval lists."""
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        s = max(a[i][0], b[j][0])
        e = min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """Parts of sorted disjoint list `a` not covered by sorted disjoint list `b`."""
    out: list[Interval] = []
    j = 0
    for s, e in a:
        while j < len(b) and b[j][1] <= s:
            j += 1
        k = j
        cur = s
        while k < len(b) and b[k][0] < e:
            if b[k][0] > cur:
                out.append((cur, b[k][0]))
            cur = max(cur, b[k][1])
            k += 1
        if cur < e:
            out.append((cur, e))
    return out


def measure(intervals: Iterable[Interval]) -> int:
    return sum(e - s for s, e in intervals)


def iso_utc(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=1)
def _clock_texts() -> NDArray[np.str_]:
    """'THH:MM:SSZ' for every second of a day."""
    return np.array([f"T{h:02d}:{m:02d}:{s:02d}Z" for h in range(24) for m in range(60) for s in range(60)])


def iso_utc_array(ts: NDArray[np.int64]) -> NDArray[np.str_]:
    """`iso_utc` of each instant, the same strings, vectorised: a day's text per distinct day and
    a table of the 86,400 times of day (a month of events is millions of instants; strftime
    costs a microsecond each)."""
    days, secs = np.divmod(np.asarray(ts, dtype=np.int64), 86400)
    distinct, which = np.unique(days, return_inverse=True)
    dates = np.array([iso_utc(int(d) * 86400)[:10] for d in distinct], dtype="U10")
    return np.strings.add(dates[which], _clock_texts()[secs])
