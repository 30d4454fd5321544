"""The bridge's store-and-forward outbox: order, persistence, and the policy when full."""

from __future__ import annotations

import pytest

from spinewatch.service.outbox import Outbox


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
