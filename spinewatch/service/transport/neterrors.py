"""One short, human cause for a network error, whatever library raised it (socket, ssl, urllib,
requests/urllib3): used by the MQTT probe, ``doctor`` and ``grafana push`` so that the same
failure reads the same everywhere. Never includes credentials (these errors carry none)."""

from __future__ import annotations

import socket
import ssl
import urllib.error


def _leaves(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it wraps (cause, context, ``reason``, args), outermost first."""
    out: list[BaseException] = []
    stack = [exc]
    while stack:
        e = stack.pop(0)
        if any(e is seen for seen in out):
            continue
        out.append(e)
        wrapped = (e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ()))
        stack.extend(w for w in wrapped if isinstance(w, BaseException))
    return out


def network_reason(exc: BaseException) -> str:
    """``connection refused``, ``unknown host (...)``, ``no answer (timed out)``, ``TLS failed (...)``, ...

    Looks through wrapped exceptions (urllib's ``URLError.reason``, requests' ``ConnectionError`` ->
    urllib3's ``MaxRetryError`` -> ``NewConnectionError`` -> the ``OSError``) for the root cause.
    """
    chain = _leaves(exc)
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"TLS failed (certificate not trusted: {e.verify_message or e.reason})"
        if isinstance(e, ssl.SSLError):
            return f"TLS failed ({e.reason or e})"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, socket.gaierror):
            return f"unknown host ({e.strerror or e})"
        if isinstance(e, (TimeoutError, socket.timeout)) or "Timeout" in type(e).__name__:
            return "no answer (timed out)"
    for e in chain:
        if isinstance(e, OSError) and not isinstance(e, urllib.error.URLError) and e.strerror:
            return e.strerror[0].lower() + e.strerror[1:]
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, str):
        return exc.reason
    return str(exc) or type(exc).__name__
