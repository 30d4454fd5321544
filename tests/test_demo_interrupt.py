"""Ctrl-C in ``spinewatch demo``, as a terminal sends it: SIGINT to the whole process group.

The demo runs as a subprocess in its own process group (like a shell's foreground job); the
test reads its output with a deadline, waits until it streams, and signals the group. The
demo must stop in order within a bound, with no "reconnecting" message (its private broker
must not die first), no traceback, no mosquitto left running and no temporary folder left;
a second Ctrl-C must quit at once.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from spinewatch.service.ops.embedded_broker import find_mosquitto

# The orderly stop: the source ends, up to 5 s (pipeline.STOP_DRAIN_TIMEOUT_S) for what is in
# flight (well under a second here), then publisher, ingest, store, broker; generous for a
# loaded 2-core machine.
STOP_BOUND_S = 30.0
QUIT_AT_ONCE_BOUND_S = 3.0  # the second Ctrl-C: no waiting for anything
STREAMING_DEADLINE_S = 120.0  # kernel loading (compiles on a fresh cache), broker start


class _Demo:
    def __init__(self, out: Path, tmpdir: Path, **env: str) -> None:
        e = {k: v for k, v in os.environ.items() if not k.startswith(("SPINEWATCH_MQTT", "SPINEWATCH_INFLUX"))}
        e.update(TMPDIR=str(tmpdir), PYTHONUNBUFFERED="1", **env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spinewatch", "demo", "--duration", "10m", "--speed", "1", "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=e, start_new_session=True)
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line)
        self._q.put(None)

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} within {timeout_s} s: {''.join(self.lines)}") from None
            if line is None:
                raise AssertionError(f"demo ended before {text!r}: {''.join(self.lines)}")
            self.lines.append(line)
            if text in line:
                return

    def interrupt(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does

    def wait_exit(self, timeout_s: float) -> tuple[int, str]:
        rc = self.proc.wait(timeout=timeout_s)
        while (line := self._q.get(timeout=5)) is not None:
            self.lines.append(line)
        return rc, "".join(self.lines)

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_the_demo_in_order_with_nothing_left_behind(tmp_path):
    assert find_mosquitto(), "the demo's private broker is mosquitto here"
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    demo = _Demo(tmp_path / "out", tmpdir)
    try:
        demo.wait_for("today:", STREAMING_DEADLINE_S)  # the live view: streaming through the broker
        [broker_pid] = demo.children()
        assert list(tmpdir.iterdir())  # mosquitto's private folder exists while it runs
        t0 = time.monotonic()
        demo.interrupt()
        rc, out = demo.wait_exit(STOP_BOUND_S)
        took_s = time.monotonic() - t0
    finally:
        demo.kill()
    assert "Traceback" not in out, out
    assert "reconnecting" not in out and "lost MQTT broker" not in out, out  # the broker went last
    assert rc == 130, out
    [line] = [ln for ln in out.splitlines() if ln.startswith("spinewatch: ")]
    assert line.startswith("spinewatch: demo stopped after ") and "no report written" in line, out
    assert took_s < STOP_BOUND_S
    assert not _alive(broker_pid)
    assert list(tmpdir.iterdir()) == []  # mosquitto's folder removed


@pytest.mark.network
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_second_ctrl_c_quits_at_once_while_the_first_waits(fresh_mosquitto, tmp_path):
    """A broker that stopped answering (SIGSTOP) makes the orderly stop wait for its
    acknowledgements; the second Ctrl-C must not."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    demo = _Demo(tmp_path / "out", tmpdir, SPINEWATCH_MQTT_URL=fresh_mosquitto.url)
    broker_pid = fresh_mosquitto.pid
    assert broker_pid is not None
    try:
        demo.wait_for("today:", STREAMING_DEADLINE_S)
        os.kill(broker_pid, signal.SIGSTOP)
        demo.wait_for("today:", 10)  # a message published after the broker froze is unacknowledged
        demo.interrupt()
        demo.wait_for("stopping:", STOP_BOUND_S)
        t0 = time.monotonic()
        demo.interrupt()
        rc, out = demo.wait_exit(QUIT_AT_ONCE_BOUND_S)
        took_s = time.monotonic() - t0
    finally:
        os.kill(broker_pid, signal.SIGCONT)
        demo.kill()
    assert "Traceback" not in out, out
    assert rc == 130, out
    assert any(ln.startswith("spinewatch: interrupted twice") for ln in out.splitlines()), out
    assert took_s < QUIT_AT_ONCE_BOUND_S
    assert list(tmpdir.iterdir()) == []
