"""Where posture data is kept: the Store protocol, InfluxDB 1.x/2.x and SQLite stores, schema set-up.

| module | what it holds |
|---|---|
| ``base`` | the :class:`Store` protocol, record types, settings and wear constants |
| ``influx`` | :class:`Influx1Store` (``/write``) and :class:`Influx2Store` (influxdb-client), InfluxQL reads |
| ``sqlite`` | :class:`SqliteStore`, the embedded store |
| ``lineprotocol`` | InfluxDB line protocol of the wire messages |
| ``transit`` | messages lost in transit (``posture_seq``) |
| ``influx1_schema``, ``influx2_schema`` | retention and downsampling set-up (``influx init``) |

This module re-exports the public names and opens the configured store.
"""

from __future__ import annotations

import threading
from pathlib import Path

from spinewatch.model import NS_PER_MIN
from spinewatch.service.config import InfluxConfig
from spinewatch.service.storage.base import (
    DURATION_DECIMALS,
    EXPORT_WINDOW_NS,
    RECORD_MEASUREMENTS,
    SETTINGS_MEASUREMENTS,
    SETTINGS_RP,
    WEAR_FIELD,
    Message,
    MinuteSeries,
    PostureChunk,
    Record,
    Store,
    StoreRejected,
    empty_minutes,
    legacy_wear_s,
    stored_duration_s,
)
from spinewatch.service.storage.influx import Influx1Store, Influx2Store, InfluxHttp
from spinewatch.service.storage.sqlite import SqliteStore
from spinewatch.service.transport.retry import retry_until_connected

__all__ = [
    "DURATION_DECIMALS", "EXPORT_WINDOW_NS", "NS_PER_MIN", "RECORD_MEASUREMENTS", "SETTINGS_MEASUREMENTS",
    "SETTINGS_RP", "WEAR_FIELD", "Influx1Store", "Influx2Store", "InfluxHttp", "Message", "MinuteSeries",
    "PostureChunk", "Record", "SqliteStore", "Store", "StoreRejected", "empty_minutes", "legacy_wear_s",
    "open_influx", "open_store", "stored_duration_s",
]


def open_influx(influx: InfluxConfig) -> Influx1Store | Influx2Store | None:
    """The configured InfluxDB's store (1.x or 2.x/3.x), None when no InfluxDB is configured.

    Nothing is sent to the server yet.
    """
    if influx.kind == "v1":
        return Influx1Store(influx.url, influx.db, influx.username, influx.password)
    if influx.kind == "v2":
        return Influx2Store(influx.url, influx.org, influx.bucket, influx.token)
    return None


def open_store(influx: InfluxConfig, local_path: Path, stop: threading.Event | None = None) -> Store:
    """The store a writer (ingest, the demo) uses: the configured InfluxDB, or the embedded
    SQLite store at ``local_path`` (created if missing).

    An unreachable InfluxDB 1.x is retried (logged with its address) until it answers and its
    database exists, or until ``stop`` is set.
    """
    store = open_influx(influx)
    if isinstance(store, Influx1Store):
        retry_until_connected(store.ensure_database, "InfluxDB", stop)
    return store if store is not None else SqliteStore(local_path)
