"""Exceptions raised by SpineWatch."""

from __future__ import annotations


class SpineWatchError(Exception):
    """Base class of every error SpineWatch raises on purpose."""


class ConfigError(SpineWatchError, ValueError):
    """A configuration key has a value that is not allowed.

    Attributes:
        key: the configuration key or environment variable, e.g. ``SPINEWATCH_MQTT_URL``.
        value: the offending value as given.
        allowed: what would have been accepted.
    """

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"{key}={value!r} is not valid: {allowed}")


class DecodeError(SpineWatchError, ValueError):
    """A packet or payload could not be decoded.

    Attributes:
        reason: a short, stable machine-readable reason (used as a counter label).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ConnectionFailed(SpineWatchError):
    """A server (broker, database) could not be reached.

    Attributes:
        address: ``host:port`` or URL that was tried.
    """

    def __init__(self, address: str, detail: str = "") -> None:
        self.address = address
        self.detail = detail
        super().__init__(f"cannot reach {address}" + (f": {detail}" if detail else ""))
