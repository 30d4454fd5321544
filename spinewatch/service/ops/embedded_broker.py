"""Embedded MQTT broker for the demo: a private mosquitto subprocess, else amqtt in-process."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

from spinewatch.errors import ConnectionFailed
from spinewatch.service.config import MqttConfig
from spinewatch.service.transport.mqtt import Protocol, handshake, probe

__all__ = [
    "BrokerKind",
    "BrokerPreference",
    "BrokerStartError",
    "EmbeddedBroker",
    "MqttProtocol",
    "find_mosquitto",
    "probe_mqtt_protocol",
]

_LOGGER = logging.getLogger(__name__)

BrokerKind = Literal["mosquitto", "amqtt"]
BrokerPreference = Literal["auto", "mosquitto", "amqtt"]
MqttProtocol = Protocol  # the MQTT versions SpineWatch speaks (owned by spinewatch.service.transport.mqtt)

LOOPBACK_HOST: Final = "127.0.0.1"

# mosquitto starts in ~10 ms on a laptop; 10 s leaves room for a loaded CI runner or a Pi.
STARTUP_TIMEOUT_S: Final = 10.0
# How long each readiness attempt may wait for CONNACK; short so we re-check the process often.
READY_ATTEMPT_TIMEOUT_S: Final = 1.0
# Gap between readiness attempts while mosquitto is still binding its socket.
READY_POLL_INTERVAL_S: Final = 0.02
# SIGTERM lets mosquitto close clients cleanly; it exits in well under a second, so 5 s is generous.
TERMINATE_GRACE_S: Final = 5.0
# A port picked by binding 127.0.0.1:0 may be taken by someone else before mosquitto binds it.
PORT_RACE_RETRIES: Final = 3
# Per-client queue of QoS 1 messages in mosquitto: above the ~30k messages of a simulated 8 h day.
MAX_QUEUED_MESSAGES: Final = 100_000
# Lines of the mosquitto log quoted in a start-up error.
LOG_TAIL_LINES: Final = 20
# Debian and Ubuntu install mosquitto in /usr/sbin, which is not on a normal user's PATH.
_EXTRA_MOSQUITTO_DIRS: Final = ("/usr/sbin", "/usr/local/sbin")
# Loggers amqtt (and its state machine library) would otherwise fill the demo's console with.
_AMQTT_LOGGERS: Final = ("amqtt", "transitions")


class BrokerStartError(ConnectionFailed):
    """The embedded broker could not be started or did not answer MQTT CONNECT in time.

    Attributes:
        kind: which broker was being started.
        log_tail: the last lines of the broker's log, empty for amqtt.
    """

    def __init__(self, kind: str, address: str, detail: str, log_tail: str = "") -> None:
        self.kind = kind
        self.log_tail = log_tail
        text = f"{kind} broker did not start: {detail}"
        if log_tail:
            text += f"\n--- last lines of the {kind} log ---\n{log_tail}"
        super().__init__(address, text)


def find_mosquitto() -> str | None:
    """Path of the mosquitto executable: PATH first, then /usr/sbin and /usr/local/sbin."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return shutil.which("mosquitto", path=os.pathsep.join(_EXTRA_MOSQUITTO_DIRS))


def _free_loopback_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK_HOST, 0))
        return int(sock.getsockname()[1])


def _ready_problem(host: str, port: int, protocol: MqttProtocol, timeout_s: float) -> str | None:
    """Blocking: the one MQTT probe (:func:`spinewatch.service.transport.mqtt.handshake`) against our own
    anonymous broker. None if it accepted the CONNECT, else a short reason."""
    h = handshake(MqttConfig(url=f"mqtt://{host}:{port}"), protocol, timeout_s)
    return None if h.accepted else h.detail


async def probe_mqtt_protocol(host: str, port: int, timeout_s: float = 5.0) -> MqttProtocol:
    """Find the newest MQTT version an anonymous, plain-TCP broker accepts: "5" or "3.1.1".

    Kept for callers of this module; it runs the one probe (:func:`spinewatch.service.transport.mqtt.probe`)
    in a worker thread. A configured broker (login, TLS) is probed with that function on its
    :class:`MqttConfig` instead.

    Raises:
        ConnectionFailed: the broker accepted neither version (unreachable, auth required, ...).
    """
    result = await asyncio.to_thread(probe, MqttConfig(url=f"mqtt://{host}:{port}"), timeout_s)
    if result.accepted:
        return result.last.protocol
    raise ConnectionFailed(f"{host}:{port}", "; ".join(f"MQTT {h.protocol}: {h.detail}" for h in result.attempts))


def _quiet_amqtt_loggers() -> None:
    """Set amqtt's loggers to WARNING unless the application configured them itself."""
    for name in _AMQTT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class EmbeddedBroker:
    """A private MQTT broker on a free loopback port, for the demo and tests.

    With ``prefer="auto"`` it runs mosquitto as a subprocess when the executable is installed
    (MQTT 5 and 3.1.1), and otherwise the pure-Python amqtt broker on the running event loop
    (MQTT 3.1.1 only: no MQTT 5, no shared subscriptions). Clients should pick their protocol
    from :attr:`mqtt5`.

    Usage::

        async with EmbeddedBroker() as broker:
            client = mqtt.Client(..., protocol=mqtt.MQTTv5 if broker.mqtt5 else mqtt.MQTTv311)
            client.connect(broker.host, broker.port)

    The broker accepts anonymous clients, keeps nothing on disk, and is gone (port closed,
    process reaped) when the ``async with`` block exits.

    Args:
        prefer: "auto" (mosquitto if installed, else amqtt), "mosquitto" or "amqtt".
        startup_timeout_s: how long the broker may take to answer MQTT CONNECT.

    Raises (on entering):
        BrokerStartError: the broker did not start; for mosquitto the message quotes its log.
    """

    def __init__(self, prefer: BrokerPreference = "auto", *, startup_timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        if prefer not in ("auto", "mosquitto", "amqtt"):
            raise ValueError(f"prefer must be 'auto', 'mosquitto' or 'amqtt', got {prefer!r}")
        if startup_timeout_s <= 0:
            raise ValueError(f"startup_timeout_s must be positive, got {startup_timeout_s}")
        self._prefer: BrokerPreference = prefer
        self._startup_timeout_s = startup_timeout_s
        self._host = LOOPBACK_HOST
        self._port: int | None = None
        self._kind: BrokerKind | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._amqtt: object | None = None  # amqtt.broker.Broker, imported lazily

    # -- public surface -------------------------------------------------------------------

    @property
    def host(self) -> str:
        """Address the broker listens on (always 127.0.0.1)."""
        return self._host

    @property
    def port(self) -> int:
        """TCP port the broker listens on."""
        if self._port is None:
            raise RuntimeError("EmbeddedBroker is not running; use 'async with EmbeddedBroker() as b'")
        return self._port

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://{self._host}:{self.port}"

    @property
    def kind(self) -> BrokerKind:
        """Which broker runs: "mosquitto" or "amqtt"."""
        if self._kind is None:
            raise RuntimeError("EmbeddedBroker is not running")
        return self._kind

    @property
    def mqtt5(self) -> bool:
        """Whether the broker speaks MQTT 5 (mosquitto) or only 3.1.1 (amqtt)."""
        return self.kind == "mosquitto"

    async def __aenter__(self) -> EmbeddedBroker:
        if self._kind is not None:
            raise RuntimeError("EmbeddedBroker is already running")
        mosquitto = find_mosquitto() if self._prefer in ("auto", "mosquitto") else None
        if self._prefer == "mosquitto" and mosquitto is None:
            raise BrokerStartError(
                "mosquitto",
                self._host,
                "the mosquitto executable is not on PATH (nor in /usr/sbin); "
                "install it (apt install mosquitto) or use prefer='amqtt'",
            )
        if mosquitto is not None:
            await self._start_mosquitto(mosquitto)
        else:
            await self._start_amqtt()
        _LOGGER.info("embedded %s broker listening on %s", self._kind, self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the broker; safe to call twice."""
        try:
            if self._proc is not None:
                await asyncio.to_thread(self._stop_process, self._proc)
            if self._amqtt is not None:
                await self._amqtt.shutdown()  # type: ignore[attr-defined]
        finally:
            self._proc = None
            self._amqtt = None
            if self._tmpdir is not None:
                self._tmpdir.cleanup()
                self._tmpdir = None
            if self._kind is not None:
                _LOGGER.info("embedded %s broker on port %s stopped", self._kind, self._port)
            self._kind = None
            self._port = None

    def kill_now(self) -> None:
        """Blocking, for an immediate exit (a second Ctrl-C): SIGKILL mosquitto, reap it and
        remove its folder, without the orderly :meth:`aclose`. amqtt dies with the process."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    # -- mosquitto ------------------------------------------------------------------------

    async def _start_mosquitto(self, executable: str) -> None:
        self._tmpdir = tempfile.TemporaryDirectory(prefix="spinewatch-mosquitto-")
        workdir = Path(self._tmpdir.name)
        log_path = workdir / "mosquitto.log"
        last_error: BrokerStartError | None = None
        try:
            for _attempt in range(PORT_RACE_RETRIES):
                port = _free_loopback_port()
                conf_path = workdir / "mosquitto.conf"
                conf_path.write_text(_mosquitto_conf(port), encoding="utf-8")
                with log_path.open("ab") as log_file:
                    # mosquitto logs to stderr (log_dest stderr) which we send to the log file: the
                    # file is opened here, so it stays writable after mosquitto drops root privileges.
                    # A plain Popen (it returns once the child is started), not an asyncio subprocess:
                    # _stop_process must also stop it synchronously, as in the except clause below.
                    # Its own session: a Ctrl-C in the terminal (SIGINT to the foreground process
                    # group) reaches the demo, which stops its clients first and the broker last,
                    # instead of the broker dying under them.
                    proc = subprocess.Popen(  # noqa: ASYNC220
                        [executable, "-c", str(conf_path)],
                        stdin=subprocess.DEVNULL,
                        stdout=log_file,
                        stderr=log_file,
                        cwd=workdir,
                        preexec_fn=_die_with_parent,
                        start_new_session=True,
                    )
                self._proc = proc
                try:
                    await self._wait_ready_mosquitto(proc, port, log_path)
                except BrokerStartError as exc:
                    await asyncio.to_thread(self._stop_process, proc)
                    self._proc = None
                    last_error = exc
                    if "Address already in use" in exc.log_tail:
                        _LOGGER.debug("port %s was taken before mosquitto bound it; retrying", port)
                        continue
                    raise
                self._port = port
                self._kind = "mosquitto"
                return
            assert last_error is not None  # loop ran at least once
            raise last_error
        except BaseException:
            # Also on cancellation (Ctrl-C while waiting for CONNACK): no mosquitto may outlive us.
            if self._proc is not None:
                self._stop_process(self._proc)
                self._proc = None
            self._tmpdir.cleanup()
            self._tmpdir = None
            raise

    async def _wait_ready_mosquitto(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        """Poll with a deadline until mosquitto answers CONNECT with CONNACK."""
        deadline = time.monotonic() + self._startup_timeout_s
        address = f"{self._host}:{port}"
        problem = "not started"
        while True:
            if proc.poll() is not None:
                raise BrokerStartError(
                    "mosquitto", address, f"process exited with code {proc.returncode}", _tail(log_path)
                )
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise BrokerStartError(
                    "mosquitto",
                    address,
                    f"no CONNACK within {self._startup_timeout_s:g} s (last attempt: {problem})",
                    _tail(log_path),
                )
            attempt_s = min(READY_ATTEMPT_TIMEOUT_S, remaining_s)
            problem_or_none = await asyncio.to_thread(_ready_problem, self._host, port, "5", attempt_s)
            if problem_or_none is None:
                return
            problem = problem_or_none
            await asyncio.sleep(READY_POLL_INTERVAL_S)  # poll interval, not synchronisation

    @staticmethod
    def _stop_process(proc: subprocess.Popen[bytes]) -> None:
        """Blocking: SIGTERM, wait up to TERMINATE_GRACE_S, then SIGKILL."""
        if proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            _LOGGER.warning("mosquitto (pid %s) ignored SIGTERM for %s s; killing it", proc.pid, TERMINATE_GRACE_S)
            proc.kill()
            proc.wait()

    # -- amqtt ----------------------------------------------------------------------------

    async def _start_amqtt(self) -> None:
        _quiet_amqtt_loggers()
        try:
            from amqtt.broker import Broker
            from amqtt.errors import BrokerError
        except ImportError as exc:
            raise BrokerStartError(
                "amqtt", self._host, "neither mosquitto nor the amqtt package is installed"
            ) from exc
        config = {
            # Port 0: the OS picks a free port atomically; we read it back from the socket.
            "listeners": {"default": {"type": "tcp", "bind": f"{self._host}:0", "max_connections": 0}},
            # Listing plugins replaces amqtt's defaults: no event/packet loggers, no $SYS topics
            # (the old "sys_interval: 0"), no topic checking, anonymous clients allowed.
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = Broker(config, loop=asyncio.get_running_loop())
        try:
            await broker.start()
        except BrokerError as exc:
            raise BrokerStartError("amqtt", f"{self._host}:0", str(exc)) from exc
        self._amqtt = broker
        try:
            port = _amqtt_bound_port(broker)
        except (AttributeError, KeyError, IndexError) as exc:
            await self.aclose()
            raise BrokerStartError("amqtt", f"{self._host}:0", "cannot read the bound port") from exc
        self._port = port
        self._kind = "amqtt"
        problem = await asyncio.to_thread(_ready_problem, self._host, port, "3.1.1", self._startup_timeout_s)
        if problem is not None:
            await self.aclose()
            raise BrokerStartError("amqtt", f"{self._host}:{port}", problem)


def _die_with_parent() -> None:
    """In the forked child: ask Linux to SIGTERM mosquitto if the demo dies without cleaning up.

    Best effort (Linux prctl PR_SET_PDEATHSIG). A change of credentials clears the setting, so
    the private config tells a mosquitto started as root to stay root (:func:`_mosquitto_conf`).
    """
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _amqtt_bound_port(broker: object) -> int:
    """Port of amqtt's 'default' listener (amqtt 0.12 keeps its asyncio.Server in ``_servers``)."""
    server = broker._servers["default"].instance  # type: ignore[attr-defined]
    return int(server.sockets[0].getsockname()[1])


def _mosquitto_conf(port: int) -> str:
    return (
        "# Written by spinewatch.service.ops.embedded_broker for a private demo broker; deleted on exit.\n"
        f"listener {port} {LOOPBACK_HOST}\n"
        "allow_anonymous true\n"
        "persistence false\n"
        # mosquitto's default of 1000 queued QoS 1 messages per client silently drops data when a
        # subscriber (the ingest) lags a fast publisher, e.g. the demo replaying a whole day in
        # seconds. 100k x ~2 KB posture messages bounds the queue at ~200 MB.
        f"max_queued_messages {MAX_QUEUED_MESSAGES}\n"
        "log_dest stderr\n"
        "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
        "connection_messages true\n"
        # Run as root, mosquitto drops to the 'mosquitto' user, and Linux then clears the parent-death
        # signal (_die_with_parent): a hard-killed demo would leave it running. Keep the demo's user.
        + ("user root\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else "")
    )
