"""Retry policy: a pure backoff function, and a helper that retries a call until it works."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Final, TypeVar

from spinewatch.errors import ConnectionFailed

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

# A server that stays away is retried at least this often, seconds: often enough that
# data flows again soon after an outage, rarely enough not to hammer a recovering server.
BACKOFF_CAP_S: Final = 30.0


def backoff_s(attempt: int, cap_s: float = BACKOFF_CAP_S) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): full jitter over 0.5 * 2^attempt, capped.

    >>> 0 <= backoff_s(1) <= 1.0
    True
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    return random.uniform(0.0, min(cap_s, 0.5 * 2.0 ** min(attempt, 16)))


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
            delay = backoff_s(attempt)
            _LOGGER.warning("cannot reach %s at %s (%s); retry %d in %.1f s",
                            what, exc.address, exc.detail, attempt, delay)
            if stop.wait(delay):
                raise
