"""``spinewatch doctor``: check broker, InfluxDB, Grafana and Bluetooth; say what is wrong and how to fix it."""

from __future__ import annotations

from typing import Any


def add_doctor_commands(subparsers: Any) -> None:
    """Add ``doctor`` to the ``spinewatch`` command line."""
