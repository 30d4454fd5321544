"""The one rule for the period of ``--from`` and ``--to``, shared by ``report`` and ``export``.

A date ``YYYY-MM-DD`` is a local day (in the patient's time zone, or ``--tz``), and both days
are included: ``--from 2026-03-02 --to 2026-03-02`` is that one day, in either command.
``export`` also takes times, ``YYYY-MM-DDTHH:MM[:SS]`` (optionally ``+HH:MM`` or ``Z``): a time
``--to`` is the end of the period, excluded. ``--from`` must come before the end.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

from spinewatch.errors import ConfigError

RULE: Final = "dates are local days, --from and --to both included"
_DATE_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_day(option: str, text: str) -> dt.date:
    """``YYYY-MM-DD`` -> date; ConfigError naming ``option`` otherwise."""
    try:
        if not _DATE_RE.match(text):
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(option, text, "a date YYYY-MM-DD, e.g. 2026-03-01") from None


def check_days(first: dt.date, last: dt.date) -> None:
    """``--from`` on or before ``--to`` (both days included)."""
    if last < first:
        raise ConfigError("--from", first.isoformat(), f"a date on or before --to ({last.isoformat()}; {RULE})")


def parse_bound(option: str, text: str) -> tuple[dt.datetime, bool, bool]:
    """A date or a time -> (datetime, has its own offset, is a whole day).

    A day is its local midnight; a time without an offset is naive: the caller places it in the
    patient's time zone.
    """
    try:
        if _DATE_RE.match(text):
            return dt.datetime.combine(dt.date.fromisoformat(text), dt.time()), False, True
        if "T" not in text:
            raise ValueError
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(option, text, "a date YYYY-MM-DD or a time YYYY-MM-DDTHH:MM[:SS] "
                                        "(optionally with +HH:MM or Z)") from None
    return when, when.tzinfo is not None, False


def period_end(to: dt.datetime, to_is_day: bool) -> dt.datetime:
    """The excluded end of the period: the midnight after a ``--to`` day, else the ``--to`` time itself."""
    return to + dt.timedelta(days=1) if to_is_day else to


def check_bounds(from_text: str, to_text: str, start_ns: int, end_ns: int) -> None:
    """The period [start, end) is not empty; ConfigError naming ``--from`` otherwise."""
    if start_ns >= end_ns:
        raise ConfigError("--from", from_text, f"a date or time before --to ({to_text}; {RULE}, a time --to "
                                               "excluded)")
