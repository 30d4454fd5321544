"""The bridge's store-and-forward outbox: order, persistence, and the policy when full."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from spinewatch.service.bridge.outbox import Outbox, OutboxBusy, open_outbox, outbox_path
from spinewatch.service.config import BridgeConfig, Config


def test_messages_come_back_in_order_and_survive_reopening(tmp_path):
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    ids = [box.append(f"t/{i}", bytes([i]) * 10) for i in range(5)]
    assert ids == sorted(ids)
    box.remove(ids[:2])
    box.close()
    again = Outbox(path)
    assert [m.topic for m in again.after(0, 10)] == ["t/2", "t/3", "t/4"]
    assert again.size_bytes == 30
    assert [m.topic for m in again.after(ids[3], 10)] == ["t/4"]


def test_when_full_the_oldest_posture_messages_go_and_events_stay(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", max_bytes=100)
    box.append("event/0", b"e" * 30, droppable=False)
    for i in range(5):
        box.append(f"posture/{i}", b"p" * 20)
    # 30 + 5 * 20 = 130 > 100: the two oldest posture messages made room
    topics = [m.topic for m in box.after(0, 10)]
    assert topics == ["event/0", "posture/2", "posture/3", "posture/4"]
    assert box.dropped == 2 and box.size_bytes == 90


def test_remove_ignores_unknown_ids_and_keeps_the_size_right(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    a = box.append("a", b"xx")
    box.remove([a, a + 100])
    assert len(box) == 0 and box.size_bytes == 0


def test_max_bytes_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="max_bytes"):
        Outbox(tmp_path / "o.sqlite", max_bytes=0)


def posture(seq: int, epoch: int) -> bytes:
    return f"{seq}/{epoch}".encode()


def test_posture_messages_are_numbered_as_they_enter_and_the_counter_survives_reopening(tmp_path):
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    epoch = box.seq_epoch
    assert 1 <= epoch < 2**53
    box.extend([("posture", posture, 1, False, True), ("event", b"e", 1, False, False),
                ("posture", posture, 1, False, True)])
    box.close()
    again = Outbox(path)  # a restart: same counter, same epoch, next number
    assert again.seq_epoch == epoch and again.seq == 2
    again.append("posture", posture)
    assert [m.payload for m in again.after(0, 10)] == [f"1/{epoch}".encode(), b"e", f"2/{epoch}".encode(),
                                                       f"3/{epoch}".encode()]
    assert Outbox(tmp_path / "other.sqlite").seq_epoch != epoch, "a new outbox file is a new counter"


def test_drops_leave_a_gap_in_seq_and_are_counted_in_the_file(tmp_path):
    path = tmp_path / "o.sqlite"
    box = Outbox(path, max_bytes=40)
    for _ in range(10):
        box.append("posture", lambda s, e: b"%08d" % s)  # 8 bytes each: 5 fit
    kept = [int(m.payload) for m in box.after(0, 100)]
    assert kept == [6, 7, 8, 9, 10] and box.dropped == 5
    box.close()
    assert Outbox(path, max_bytes=40).dropped == 5, "the drop count is kept with the outbox"


def test_one_process_per_outbox_and_the_lock_goes_with_the_process(tmp_path):
    bridge = BridgeConfig(outbox_dir=str(tmp_path), outbox_max_mb=1.0)
    first = open_outbox(bridge, "p1", "d1")
    assert first.path == str(outbox_path(bridge, "p1", "d1"))
    assert first.max_bytes == 1024 * 1024, "bridge.outbox_max_mb is honoured"
    script = ("import sys; from spinewatch.service.config import BridgeConfig; "
              "from spinewatch.service.bridge.outbox import open_outbox; "
              f"open_outbox(BridgeConfig(outbox_dir={str(tmp_path)!r}), sys.argv[1], sys.argv[2])")
    busy = subprocess.run([sys.executable, "-c", script, "p1", "d1"], capture_output=True, text=True)
    assert busy.returncode != 0 and "OutboxBusy" in busy.stderr and f"pid {os.getpid()}" in busy.stderr
    other = subprocess.run([sys.executable, "-c", script, "p1", "d2"], capture_output=True, text=True)
    assert other.returncode == 0, other.stderr
    therapist = open_outbox(bridge, "p1", "d1", "therapist")  # calibrate/config set beside a running bridge
    assert therapist.path != first.path
    therapist.close()
    first.close()
    open_outbox(bridge, "p1", "d1").close()  # released on close
    holder = subprocess.Popen([sys.executable, "-c", script + "; print('held', flush=True); "
                               "import time; time.sleep(60)", "p1", "d1"],  # sync-ok: the holder waits to be killed
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutboxBusy, match="in use by another process"):
            open_outbox(bridge, "p1", "d1")
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    finally:
        holder.kill()
    open_outbox(bridge, "p1", "d1").close()  # kill -9 leaves no stale lock


def test_a_restarted_bridge_never_stamps_before_what_it_sent_and_a_replay_keeps_its_anchor(tmp_path):
    from spinewatch.model import PostureBatch
    from spinewatch.service.bridge.publisher import Publisher
    from spinewatch.service.cli.bridge import clock_anchor_ns

    box = open_outbox(BridgeConfig(outbox_dir=str(tmp_path)), "p1", "d1")
    now = 1_800_000_000 * 10**9
    assert clock_anchor_ns(box, None, 0, now) == now, "a first live start maps sensor time 0 to now"
    # the previous run stamped up to 5 s ahead of the wall clock (a sensor clock running fast)
    pub = Publisher(Config.load({"SPINEWATCH_MQTT_URL": "mqtt://127.0.0.1:1"}).mqtt, "p1", "d1", "5", box)
    n, dt = 100, 10_000_000
    pub.publish_postures([PostureBatch("p1", "d1", now + 4 * 10**9, dt, np.zeros(n), np.zeros(n),
                                       np.zeros(n, np.int8), np.zeros(n, np.int8))])
    assert pub.last_end_utc_ns == now + 5 * 10**9
    assert clock_anchor_ns(box, None, 0, now + 10**9) == now + 5 * 10**9, "new samples start after the old ones"
    assert clock_anchor_ns(box, None, 0, now + 9 * 10**9) == now + 9 * 10**9
    rec = tmp_path / "r.npz"
    rec.write_bytes(b"a recording")
    first = clock_anchor_ns(box, str(rec), 7 * 10**9, now + 20 * 10**9)
    assert first == now + 20 * 10**9
    box.close()
    box = open_outbox(BridgeConfig(outbox_dir=str(tmp_path)), "p1", "d1")  # restarted
    assert clock_anchor_ns(box, str(rec), 7 * 10**9, now + 99 * 10**9) == first, "a replay re-sends at the same times"
    rec.write_bytes(b"another recording")
    assert clock_anchor_ns(box, str(rec), 7 * 10**9, now + 99 * 10**9) == now + 99 * 10**9
    box.close()
