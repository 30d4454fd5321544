"""Remote therapeutic monitoring (RTM) periods: days with data per 30-day period, billing thresholds.

Pure. The definitions are the compliance dashboard's (docs/dashboards.md): a period is 30
consecutive days starting at the report's first day (a 30-day period, not a calendar month;
the last one may be shorter). The two device-supply code families are exclusive: a period
with 2 to 15 days with data meets the 2-15 day threshold, one with 16 or more meets the 16+
day threshold (and is billed with that code instead, so it does not also "meet 2-15");
``band`` names the family: ``16+``, ``2-15`` or ``none``.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

RTM_PERIOD_DAYS: Final = 30  # RTM device-supply codes count days within a 30-day period
RTM_MIN_DAYS_LOW: Final = 2  # device-supply code for 2-15 days with data (from 2026)
RTM_MIN_DAYS_HIGH: Final = 16  # device-supply code for 16-30 days with data


@dataclass(frozen=True, slots=True)
class RtmPeriod:
    """One 30-day period.

    Attributes:
        start: first local date of the period.
        end: last local date (inclusive).
        days: its length in days (30, or fewer for the last period of a range).
        days_with_data: days of the period with data.
        meets_2_to_15_days: 2 to 15 days with data (inclusive).
        meets_16_plus_days: at least 16 days with data.
    """

    start: dt.date
    end: dt.date
    days: int
    days_with_data: int
    meets_2_to_15_days: bool
    meets_16_plus_days: bool

    @property
    def band(self) -> Literal["16+", "2-15", "none"]:
        """The one threshold family this period qualifies for."""
        if self.meets_16_plus_days:
            return "16+"
        return "2-15" if self.meets_2_to_15_days else "none"


def rtm_periods(dates: Sequence[dt.date], has_data: Sequence[bool],
                period_days: int = RTM_PERIOD_DAYS) -> list[RtmPeriod]:
    """Split consecutive ``dates`` into periods of ``period_days`` and count days with data.

    Args:
        dates: (D,) consecutive local dates, the report's range.
        has_data: (D,) whether each date is a day with data.
        period_days: period length, days.

    Raises:
        ValueError: lengths differ, dates not consecutive, or period_days < 1.
    """
    if len(dates) != len(has_data):
        raise ValueError(f"dates and has_data differ in length: {len(dates)}, {len(has_data)}")
    if period_days < 1:
        raise ValueError(f"period_days must be >= 1, got {period_days}")
    for a, b in itertools.pairwise(dates):
        if (b - a).days != 1:
            raise ValueError(f"dates must be consecutive days, got {a} then {b}")
    out = []
    for i in range(0, len(dates), period_days):
        n = sum(bool(x) for x in has_data[i:i + period_days])
        chunk = dates[i:i + period_days]
        out.append(RtmPeriod(chunk[0], chunk[-1], len(chunk), n,
                             RTM_MIN_DAYS_LOW <= n < RTM_MIN_DAYS_HIGH, n >= RTM_MIN_DAYS_HIGH))
    return out
