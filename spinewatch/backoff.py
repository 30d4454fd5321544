"""The retry-delay policy: how long to wait before retry ``attempt``, as one pure function.

Every retry loop of SpineWatch waits :func:`backoff_delay_s`: exponential growth from a base
delay, a cap, and jitter, so that many clients failing together do not retry together. It
sits beside :mod:`spinewatch.model` and :mod:`spinewatch.errors` at the bottom of the package
(standard library only, no I/O, clock or logging) so that both sides may import it:

- the BLE reconnects (:func:`spinewatch.firmware_bridge.ble.reconnect_delay_s`) choose the
  base delay from what went wrong, grow by 1.5 per attempt and use equal jitter;
- the servers (:func:`spinewatch.service.transport.retry.server_retry_delay_s`: InfluxDB;
  its 30 s cap is also paho's MQTT reconnect ceiling) double from 1 s up to 30 s with full
  jitter.

Jitter kinds, after the AWS Architecture Blog's "Exponential Backoff and Jitter" (aiomqtt v3
draws ``random.uniform(0, 1.5 ** min(10, attempt))``, which is full jitter):

- ``"full"``: ``delay * u``, anywhere in [0, delay]. Spreads a crowd of clients best; a
  single retry may come at once.
- ``"equal"``: ``delay * (0.5 + 0.5 * u)``, in [delay / 2, delay]: never less than half, so a
  retry loop never spins.

``u`` is the draw in [0, 1]; tests pass it, which makes the function pure.
"""

from __future__ import annotations

import random
from typing import Final, Literal, get_args

__all__ = ["JITTER_KINDS", "Jitter", "backoff_delay_s"]

Jitter = Literal["full", "equal"]
JITTER_KINDS: Final[tuple[Jitter, ...]] = get_args(Jitter)


def backoff_delay_s(attempt: int, *, base_s: float, growth: float, max_exponent: int, cap_s: float,
                    jitter: Jitter, draw: float | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (1-based).

    ``min(cap_s, base_s * growth ** min(attempt - 1, max_exponent))``, then jittered.

    Args:
        attempt: 1 for the first retry after a failure.
        base_s: the wait before the first retry, before jitter, s.
        growth: factor per attempt (1.5, 2).
        max_exponent: the exponent stops growing here, so the arithmetic stays finite
            however long a loop retries (the cap usually binds first).
        cap_s: upper bound before jitter, s.
        jitter: ``"full"`` or ``"equal"`` (module docstring).
        draw: the jitter's random number in [0, 1]; None draws ``random.random()``.

    Raises:
        ValueError: attempt < 1, draw outside [0, 1], or an unknown jitter kind.

    >>> backoff_delay_s(3, base_s=1.0, growth=2.0, max_exponent=15, cap_s=30.0, jitter="equal", draw=1.0)
    4.0
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if jitter not in JITTER_KINDS:
        raise ValueError(f"jitter must be one of {JITTER_KINDS}, got {jitter!r}")
    if draw is None:
        draw = random.random()
    if not 0.0 <= draw <= 1.0:
        raise ValueError(f"jitter draw must be in [0, 1], got {draw}")
    delay = min(cap_s, base_s * growth ** min(attempt - 1, max_exponent))
    return delay * draw if jitter == "full" else delay * (0.5 + 0.5 * draw)
