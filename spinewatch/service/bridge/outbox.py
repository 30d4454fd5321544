"""Disk-backed store-and-forward queue of the bridge's MQTT messages (SQLite, in order).

Every message the bridge produces is first appended here, then handed to paho, and deleted
only when the broker acknowledged it (PUBACK). So nothing is lost while the broker is
unreachable or when the bridge process restarts: on start the outbox is drained in order.

When full (``max_bytes`` of payload), the oldest ``posture`` messages are dropped first and
counted (:attr:`Outbox.dropped`, kept in the file); events and status are kept: an episode
is worth more than a second of angles, and the newest data is what a live view needs.

The file also owns the posture message counter of the wire format (docs/wire-format.md):
``seq_epoch``, a random id in [1, 2**53) chosen when the file is created, and ``seq``, given
to each posture message as it enters the outbox (1, 2, 3, ... in the same transaction, so
it continues across restarts; only messages dropped when full leave a gap).

It is also where a device's bridge keeps what it learnt across restarts (:meth:`Outbox.set_kept`):
the orientation filter's state (:mod:`spinewatch.service.bridge.filter_state`).

One owner decides where the outbox of a (patient, device) lives and opens it:
:func:`open_outbox`. It takes an exclusive OS lock (``fcntl.flock`` on ``<file>.lock``),
so a second process for the same (patient, device) is refused (:class:`OutboxBusy`)
instead of sharing the queue; the kernel releases the lock when the process dies, even by
``kill -9``, so no stale lock is left behind.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from spinewatch.errors import SpineWatchError

if TYPE_CHECKING:
    from spinewatch.service.config import BridgeConfig

_LOGGER = logging.getLogger(__name__)

# Default bound: 200 MB holds ~1 week of one patient's 1-s posture messages (~1.4 KB each);
# a Raspberry Pi SD card has room, and a week covers any realistic broker outage.
DEFAULT_MAX_BYTES: Final = 200 * 1024 * 1024
# Where outboxes live when ``bridge.outbox_dir`` is empty.
DEFAULT_DIR: Final = "~/.local/share/spinewatch"
# seq_epoch is drawn from [1, SEQ_EPOCH_END): exact in every JSON reader (wire.MAX_SEQ).
SEQ_EPOCH_END: Final = 2**53

# A payload, or a function of (seq, seq_epoch) giving it: such a message is numbered as it
# enters the outbox (posture messages).
Payload = bytes | Callable[[int, int], bytes]


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

    Attributes:
        seq_epoch: the id of this file's posture counter, in [1, 2**53), fixed at creation.
        dropped: posture messages dropped because the outbox was full, since the file was
            created (kept in the file).
    """

    def __init__(self, path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self.max_bytes = max_bytes
        self._on_close: list[Callable[[], None]] = []
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
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS kept (key TEXT PRIMARY KEY, value BLOB NOT NULL);
            """
        )
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('seq_epoch', ?)",
                         (1 + secrets.randbelow(SEQ_EPOCH_END - 1),))
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('seq', 0)")
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('dropped', 0)")
        self._db.execute("COMMIT")
        (self._bytes,) = self._db.execute("SELECT coalesce(sum(length(payload)), 0) FROM outbox").fetchone()
        self.seq_epoch = int(self.get_meta("seq_epoch") or 0)
        self._seq = int(self.get_meta("seq") or 0)
        self.dropped = int(self.get_meta("dropped") or 0)

    @property
    def seq(self) -> int:
        """``seq`` of the newest numbered message (0 before the first)."""
        return self._seq

    def get_meta(self, key: str) -> int | None:
        """An integer kept in the file under ``key`` (None if never set)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def set_meta(self, key: str, value: int) -> None:
        """Keep an integer in the file (e.g. a replay's clock anchor)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, int(value)))

    def get_kept(self, key: str) -> bytes | None:
        """Bytes another part of the bridge keeps in the file under ``key`` (None if never set),
        e.g. the orientation filter's state (:mod:`spinewatch.service.bridge.filter_state`)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM kept WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_kept(self, key: str, value: bytes) -> None:
        """Keep bytes in the file under ``key`` (replacing what was there), committed at once."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kept VALUES (?, ?)", (key, value))

    def append(self, topic: str, payload: Payload, qos: int = 1, retain: bool = False,
               droppable: bool = True) -> int:
        """Queue a message; returns its id. Makes room first if the outbox is full."""
        return self.extend([(topic, payload, qos, retain, droppable)])

    def extend(self, items: list[tuple[str, Payload, int, bool, bool]],
               meta: dict[str, int] | None = None) -> int:
        """Queue (topic, payload, qos, retain, droppable) messages in one transaction.

        A payload given as a function of ``(seq, seq_epoch)`` is numbered here: the next
        ``seq`` of this file, stored in the same transaction.

        Args:
            meta: integers to keep in the file in the same transaction (see :meth:`get_meta`).

        Returns:
            The id of the last one.
        """
        with self._lock:
            seq = self._seq
            rows = []
            for t, p, q, r, d in items:
                if callable(p):
                    seq += 1
                    p = p(seq, self.seq_epoch)
                rows.append((t, p, q, int(r), int(d)))
            size = sum(len(r[1]) for r in rows)
            dropped = self.dropped
            self._db.execute("BEGIN")
            try:
                over = self._bytes + size - self.max_bytes
                freed = self._drop_oldest(over) if over > 0 else 0
                self._db.executemany(
                    "INSERT INTO outbox (topic, payload, qos, retain, droppable) VALUES (?,?,?,?,?)", rows)
                kept = {"seq": seq, "dropped": self.dropped, **(meta or {})}
                self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(kept.items()))
                (last,) = self._db.execute("SELECT max(id) FROM outbox").fetchone()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self.dropped = dropped
                raise
            self._seq = seq
            self._bytes += size - freed
        if self.dropped > dropped:
            _LOGGER.warning("outbox %s full (%.0f MB): dropped the %d oldest posture messages (%d in all since "
                            "it was created); events are kept", self.path, self.max_bytes / 2**20,
                            self.dropped - dropped, self.dropped)
        return int(last or 0)

    def _drop_oldest(self, need_bytes: int) -> int:
        """Delete the oldest droppable messages holding ``need_bytes``; returns the bytes freed."""
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
        self.dropped += len(ids)
        return freed

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
        """Close the file (and release the lock taken by :func:`open_outbox`)."""
        with self._lock:
            self._db.close()
        while self._on_close:
            self._on_close.pop()()


OutboxKind = Literal["bridge", "therapist"]


class OutboxBusy(SpineWatchError):
    """Another process holds the outbox of this (patient, device)."""

    def __init__(self, path: Path, kind: OutboxKind, patient: str, device: str, holder: str) -> None:
        who = f" (pid {holder})" if holder else ""
        what = ("a bridge (or demo) for it is already running" if kind == "bridge"
                else "another calibrate or config set for it is running")
        super().__init__(f"the outbox of {patient}/{device} ({path}) is in use by another process{who}: {what}; "
                         "stop that one first, or give this one another --device-id")


def outbox_path(bridge: BridgeConfig, patient: str, device: str, kind: OutboxKind = "bridge") -> Path:
    """The outbox file of (patient, device): ``<bridge.outbox_dir>/<patient>+<device>.outbox.sqlite``.

    ``kind="therapist"`` is the separate queue of what ``calibrate`` and ``config set``
    publish for that device (``...+<device>.therapist.sqlite``): they run on the therapist's
    side while the patient's bridge holds its own.
    """
    from spinewatch.service.transport import wire

    wire.check_id("patient", patient)
    wire.check_id("device", device)
    folder = Path(os.path.expanduser(bridge.outbox_dir or DEFAULT_DIR))
    suffix = "outbox" if kind == "bridge" else "therapist"
    return folder / f"{patient}+{device}.{suffix}.sqlite"  # "+" is in no id: no two pairs share a name


def open_outbox(bridge: BridgeConfig, patient: str, device: str, kind: OutboxKind = "bridge",
                *, fresh: bool = False) -> Outbox:
    """Lock and open the outbox of (patient, device) (see :func:`outbox_path`).

    Args:
        bridge: ``[bridge]`` settings: the folder and ``outbox_max_mb``.
        fresh: discard what an earlier run left (the demo starts afresh); only after the lock
            is taken, so never under another process.

    Raises:
        OutboxBusy: another process holds it; the lock goes with that process (also on kill -9).
    """
    path = outbox_path(bridge, patient, device, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = Path(f"{path}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise OutboxBusy(path, kind, patient, device, holder) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        box = Outbox(path, max(1, int(bridge.outbox_max_mb * 1024 * 1024)))
    except BaseException:
        os.close(fd)
        raise
    box._on_close.append(lambda: os.close(fd))  # closing the descriptor releases the lock
    return box
