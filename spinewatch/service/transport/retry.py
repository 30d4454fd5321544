"""Retry delays of the servers, and a helper that retries a call until it works.

The delays are the one retry-delay policy, :func:`spinewatch.backoff.backoff_delay_s`; this
module holds only the servers' constants. InfluxDB is retried with them (set-up through
:func:`retry_until_connected`, the ingest worker's writes); paho reconnects to the MQTT broker
by itself, under the same cap (transport/mqtt.py's ``RECONNECT_MAX_S``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final, TypeVar

from spinewatch.backoff import backoff_delay_s
from spinewatch.errors import ConnectionFailed

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

# A server that stays away is retried at least this often, seconds: often enough that
# data flows again soon after an outage, rarely enough not to hammer a recovering server.
# Also paho's reconnect ceiling (transport/mqtt.py's RECONNECT_MAX_S).
BACKOFF_CAP_S: Final = 30.0
BACKOFF_FIRST_S: Final = 1.0  # before jitter: 1, 2, 4, 8, 16, then the cap
BACKOFF_GROWTH: Final = 2.0
BACKOFF_MAX_EXPONENT: Final = 15  # keeps 2 ** n finite however long a loop retries; the cap binds at 6


def server_retry_delay_s(attempt: int, cap_s: float = BACKOFF_CAP_S, draw: float | None = None) -> float:
    """Seconds to wait before retrying a server, attempt ``attempt`` (1-based).

    ``min(cap_s, 2 ** (attempt - 1))`` with full jitter (anywhere from 0 up to it): ingest
    workers that lost the same database spread their retries over the whole interval
    instead of arriving together.

    Args:
        attempt: 1 for the first retry after a failure.
        cap_s: upper bound, s.
        draw: the jitter's random number in [0, 1]; None draws one (tests pass it).

    Raises:
        ValueError: attempt < 1 or draw outside [0, 1].

    >>> 0 <= server_retry_delay_s(1) <= 1.0
    True
    """
    return backoff_delay_s(attempt, base_s=BACKOFF_FIRST_S, growth=BACKOFF_GROWTH, max_exponent=BACKOFF_MAX_EXPONENT,
                           cap_s=cap_s, jitter="full", draw=draw)


def retry_until_connected(
    call: Callable[[], T], what: str, stop: threading.Event | None = None
) -> T:
    """Call ``call`` until it stops raising :class:`ConnectionFailed`, logging each failure.

    Args:
        call: the operation (e.g. open a database).
        what: names the server in log lines, e.g. "InfluxDB".
        stop: when set, the wait is cut short and the last error is raised.
    """
    stop = stop or threading.Event()
    attempt = 0
    while True:
        try:
            return call()
        except ConnectionFailed as exc:
            attempt += 1
            delay = server_retry_delay_s(attempt)
            _LOGGER.warning("cannot reach %s at %s (%s); retry %d in %.1f s",
                            what, exc.address, exc.detail, attempt, delay)
            if stop.wait(delay):
                raise
