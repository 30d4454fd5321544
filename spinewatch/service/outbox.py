"""Disk-backed store-and-forward queue of the bridge's MQTT messages (SQLite, in order).

Every message the bridge produces is first appended here, then handed to paho, and deleted
only when the broker acknowledged it (PUBACK). So nothing is lost while the broker is
unreachable or when the bridge process restarts: on start the outbox is drained in order.

When full (``max_bytes`` of payload), the oldest ``posture`` messages are dropped first and
counted (reason ``outbox_full``); events and status are kept: an episode is worth more than
a second of angles, and the newest data is what a live view needs.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# Default bound: 200 MB holds ~1 week of one patient's 1-s posture messages (~1.4 KB each);
# a Raspberry Pi SD card has room, and a week covers any realistic broker outage.
DEFAULT_MAX_BYTES: Final = 200 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """Persistent FIFO of outgoing MQTT messages.

    Args:
        path: SQLite file (created if missing); ``":memory:"`` for a process-lifetime queue.
        max_bytes: payload bytes kept at most; beyond, the oldest posture messages go.
    """

    def __init__(self, path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self.max_bytes = max_bytes
        self.dropped = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.executescript(
            """
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=NORMAL;
            CREATE TABLE IF NOT EXISTS outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
                qos INTEGER NOT NULL, retain INTEGER NOT NULL, droppable INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS outbox_droppable ON outbox (droppable, id);
            """
        )
        (self._bytes,) = self._db.execute("SELECT coalesce(sum(length(payload)), 0) FROM outbox").fetchone()

    def append(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
               droppable: bool = True) -> int:
        """Queue a message; returns its id. Makes room first if the outbox is full."""
        return self.extend([(topic, payload, qos, retain, droppable)])

    def extend(self, items: list[tuple[str, bytes, int, bool, bool]]) -> int:
        """Queue (topic, payload, qos, retain, droppable) messages in one transaction.

        Returns:
            The id of the last one.
        """
        size = sum(len(p) for _, p, *_ in items)
        with self._lock:
            self._db.execute("BEGIN")
            try:
                over = self._bytes + size - self.max_bytes
                if over > 0:
                    self._drop_oldest(over)
                self._db.executemany(
                    "INSERT INTO outbox (topic, payload, qos, retain, droppable) VALUES (?,?,?,?,?)",
                    [(t, p, q, int(r), int(d)) for t, p, q, r, d in items],
                )
                (last,) = self._db.execute("SELECT max(id) FROM outbox").fetchone()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._bytes += size
            return int(last or 0)

    def _drop_oldest(self, need_bytes: int) -> None:
        freed = 0
        rows = self._db.execute(
            "SELECT id, length(payload) FROM outbox WHERE droppable = 1 ORDER BY id"
        )
        ids = []
        for rid, size in rows:
            if freed >= need_bytes:
                break
            ids.append(rid)
            freed += size
        self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
        self._bytes -= freed
        self.dropped += len(ids)

    def after(self, last_id: int, limit: int) -> list[QueuedMessage]:
        """Up to ``limit`` messages with id > ``last_id``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (last_id, limit),
            ).fetchall()
        return [QueuedMessage(r[0], r[1], bytes(r[2]), r[3], bool(r[4])) for r in rows]

    def remove(self, ids: list[int]) -> None:
        """Delete acknowledged messages (unknown ids are ignored)."""
        with self._lock:
            for k in range(0, len(ids), 500):  # SQLite's bound-parameter limit is 999+
                part = ids[k : k + 500]
                marks = ",".join("?" * len(part))
                self._db.execute("BEGIN")
                (freed,) = self._db.execute(
                    f"SELECT coalesce(sum(length(payload)), 0) FROM outbox WHERE id IN ({marks})", part
                ).fetchone()
                self._db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", part)
                self._db.execute("COMMIT")
                self._bytes -= freed

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT count(*) FROM outbox").fetchone()
        return int(n)

    @property
    def size_bytes(self) -> int:
        return int(self._bytes)

    def close(self) -> None:
        with self._lock:
            self._db.close()
