"""Local wall-clock readings of UTC instants for many sites at once (vectorised): hour of day,
weekday and whether the day is a weekend or public holiday at the site."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import numpy as np
from numpy.typing import NDArray

from oracle.core.calendar import zone

I64 = NDArray[np.int64]
HOUR, DAY = 3600, 86_400
# Fixed-date public holidays observed in every simulated zone (documented in truth.json).
HOLIDAYS_MMDD = ((1, 1), (5, 1), (12, 25), (12, 26))


class LocalClock:
    """Per-zone UTC offsets on an hourly grid over [t0, t1): exact for zones whose transitions
    fall on whole hours (all those the profiles use), which is all the curves need."""

    def __init__(self, zones: Sequence[str], t0: int, t1: int) -> None:
        self.zones = tuple(zones)
        self.t0 = t0 - t0 % HOUR
        n = (t1 - self.t0) // HOUR + 2
        grid = self.t0 + HOUR * np.arange(n, dtype=np.int64)
        self.offsets = np.empty((len(self.zones), n), dtype=np.int64)
        for z, name in enumerate(self.zones):
            tz = zone(name)
            # Offsets change rarely: evaluate daily and refine only the days where they change.
            days = grid[::24]
            off = np.array([_offset(int(t), tz) for t in days], dtype=np.int64)
            row = np.repeat(off, 24)[:n]
            for k in np.flatnonzero(off[1:] != off[:-1]).tolist():
                for h in range(k * 24, min((k + 1) * 24 + 1, n)):
                    row[h] = _offset(int(grid[h]), tz)
            self.offsets[z] = row
        years = range(datetime.fromtimestamp(t0, UTC).year - 1, datetime.fromtimestamp(t1, UTC).year + 2)
        self.holidays = np.array(sorted((date(y, m, d) - date(1970, 1, 1)).days
                                        for y in years for m, d in HOLIDAYS_MMDD), dtype=np.int64)

    def local(self, t: I64, zone_idx: I64) -> I64:
        """Wall-clock reading of each instant as naive seconds since 1970-01-01."""
        h = np.clip((t - self.t0) // HOUR, 0, self.offsets.shape[1] - 1)
        return t + self.offsets[zone_idx, h]

    def to_utc(self, wall: I64, zone_idx: I64) -> I64:
        """An instant whose wall-clock reading is `wall` (approximate within a DST change)."""
        guess = wall - self.offsets[zone_idx, np.clip((wall - self.t0) // HOUR, 0, self.offsets.shape[1] - 1)]
        return wall - (self.local(guess, zone_idx) - guess)

    def hour_and_offday(self, t: I64, zone_idx: I64) -> tuple[I64, NDArray[np.bool_]]:
        """Local hour (0..23) and whether the local day is a Saturday, Sunday or holiday."""
        wall = self.local(t, zone_idx)
        day = wall // DAY
        offday = ((day + 3) % 7 >= 5) | np.isin(day, self.holidays)  # 1970-01-01 was a Thursday
        return (wall % DAY) // HOUR, offday

    def offday(self, t: I64, zone_idx: I64) -> NDArray[np.bool_]:
        return self.hour_and_offday(t, zone_idx)[1]

    def holiday_dates(self, t0: int, t1: int) -> list[str]:
        lo, hi = t0 // DAY - 1, t1 // DAY + 1
        return [str(date.fromordinal(date(1970, 1, 1).toordinal() + int(d)))
                for d in self.holidays if lo <= d <= hi]


def _offset(t: int, tz: object) -> int:
    return int(datetime.fromtimestamp(t, tz).utcoffset().total_seconds())  # type: ignore[arg-type,union-attr]
