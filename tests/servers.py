"""Real test servers on free loopback ports: Mosquitto, InfluxDB 1.x, VictoriaMetrics.

Each server class owns a private base directory (config, data, logs), picks
free ports on 127.0.0.1, starts the real binary, waits until it is *usable*
(not merely listening), and stops it again (SIGTERM, then SIGKILL after a
deadline).  Nothing here ever talks to a non-loopback address or to the
default ports (1883, 8086, 8088, 8428) -- the developer machine may run its
own services there.

Usable without pytest::

    with MosquittoServer() as broker:
        print(broker.url)          # mqtt://127.0.0.1:PORT

Cleanup guarantees against orphans:
* every started server is registered in a module-level set that an
  ``atexit`` hook stops;
* each server has a ``weakref.finalize`` that stops it when collected;
* on Linux the child gets ``PR_SET_PDEATHSIG(SIGTERM)``, so even if the
  Python process is SIGKILLed the server is terminated by the kernel.
  (The death signal fires when the *thread* that started the server exits,
  so start servers from the main thread or a long-lived thread.)
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "ServerError",
    "ServerBinaryMissing",
    "ServerStartError",
    "free_port",
    "start_or_skip",
    "http_request",
    "wait_for",
    "MosquittoServer",
    "InfluxDB1Server",
    "VictoriaMetricsServer",
]

LOOPBACK = "127.0.0.1"
S = TypeVar("S", bound="_ServerBase")


# --------------------------------------------------------------------------- errors


class ServerError(RuntimeError):
    """Base class for harness errors."""


class ServerBinaryMissing(ServerError):
    """The server binary is not installed.  ``package`` names the Debian package."""

    def __init__(self, binary: str, package: str, env_var: str) -> None:
        self.binary = binary
        self.package = package
        self.env_var = env_var
        super().__init__(
            f"{binary!r} not found (looked in $PATH, /usr/sbin, /usr/bin and ${env_var}); "
            f"install the Debian package {package!r}: "
            f"sudo apt-get install -y {package}  (or run scripts/test as root)"
        )


class ServerStartError(ServerError):
    """The server did not become ready; the message carries the log tail."""


# --------------------------------------------------------------------------- helpers


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(host: str = LOOPBACK) -> int:
    """Return a port that was free on ``host`` a moment ago.

    Picked below the kernel's ephemeral range when there is room there: outgoing client
    sockets take their local port from that range, so a port outside it cannot be taken by
    a client connection while a test has stopped its server for a while (seen in CI: the
    InfluxDB restarted after a 30 s outage found its RPC port taken).
    """
    lo, _ = _ephemeral_range()
    rng = random.SystemRandom()
    if lo > 11_000:
        for _ in range(200):
            port = rng.randrange(10_000, lo)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes.

    Returns the truthy value; raises ``TimeoutError`` otherwise.  Exceptions
    from the predicate count as "not yet" (the last one is chained).
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - "not ready yet"
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}") from last_exc
        time.sleep(interval)  # sync-ok: poll interval of a loop with a deadline


def tcp_connectable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# urllib honours $http_proxy; loopback test traffic must never go through a proxy.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_request(
    method: str,
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """Tiny HTTP client (no proxies).  Returns (status, body); HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _HTTP.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _find_binary(names: Iterable[str], env_var: str) -> str | None:
    override = os.environ.get(env_var)
    if override:
        return override if os.access(override, os.X_OK) else None
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
            p = os.path.join(d, name)
            if os.access(p, os.X_OK):
                return p
    return None


def _pdeathsig_preexec() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None

    def _preexec() -> None:  # runs in the child between fork and exec
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return _preexec


_PREEXEC = _pdeathsig_preexec()

_LIVE: weakref.WeakSet[_ServerBase] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def _terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL and reap."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@atexit.register
def _stop_all_servers() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for srv in servers:
        try:
            srv.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


def start_or_skip(cls: type[S], base_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> S:
    """Construct and start ``cls``; ``pytest.skip`` (naming the Debian package) if its binary is missing."""
    try:
        server = cls(base_dir, **kwargs)
    except ServerBinaryMissing as exc:
        import pytest

        pytest.skip(str(exc))
    return server.start()  # type: ignore[return-value]


# --------------------------------------------------------------------------- base class


class _ServerBase:
    """Common process management.  Subclasses set the class attributes and
    implement ``_prepare`` (write config, return argv) and ``_probe`` (readiness)."""

    display_name = "server"
    binary_names: tuple[str, ...] = ()
    debian_package = ""
    env_var = ""  # e.g. SPINEWATCH_MOSQUITTO=/path/to/binary overrides the lookup
    #: ports ``_prepare`` needs, by role ("main" is the one in ``url``)
    port_roles: tuple[str, ...] = ("main",)
    startup_timeout = 30.0
    stop_timeout = 10.0
    _bind_failure_markers = ("address already in use",)

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        *,
        binary: str | None = None,
        startup_timeout: float | None = None,
        start_attempts: int = 3,
    ) -> None:
        self.binary = binary or _find_binary(self.binary_names, self.env_var)
        if self.binary is None or not os.access(self.binary, os.X_OK):
            raise ServerBinaryMissing(
                binary or self.binary_names[0], self.debian_package, self.env_var
            )
        self._own_base_dir = base_dir is None
        self.base_dir = Path(
            base_dir if base_dir is not None else tempfile.mkdtemp(prefix=f"sw-{self.display_name}-")
        )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.host = LOOPBACK
        self.ports: dict[str, int] = {}
        self._fixed_port = port is not None
        if port is not None:
            self.ports["main"] = port
        if startup_timeout is not None:
            self.startup_timeout = startup_timeout
        self.start_attempts = max(1, start_attempts)
        self.proc: subprocess.Popen[bytes] | None = None
        self.process_log = self.base_dir / "process.log"  # the child's stdout+stderr
        self.log_file = self.process_log  # the server's main log (Mosquitto: its own log_dest file)
        self.startup_seconds: float | None = None  # duration of the last successful start
        self._out_fh: Any = None
        self._log_offsets: dict[Path, int] = {}
        self._finalizer = weakref.finalize(self, _ServerBase._finalize, self.__dict__)

    # -- public API ----------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.ports["main"]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running else None  # type: ignore[union-attr]

    def start(self) -> _ServerBase:
        """Start and wait for readiness.

        The first start picks free ports (retrying on fresh ports if a port was
        grabbed by someone else in between).  Later starts (after ``stop()``)
        reuse the same ports, so clients can reconnect to the same URL.
        """
        if self.running:
            return self
        first_start = not all(role in self.ports for role in self.port_roles)
        # a restart keeps "main" (clients reconnect to it) but may move the other roles
        attempts = self.start_attempts if (first_start and not self._fixed_port) or len(self.port_roles) > 1 else 1
        last_err: ServerStartError | None = None
        for _ in range(attempts):
            for role in self.port_roles:
                while role not in self.ports:
                    candidate = free_port(self.host)
                    if candidate not in self.ports.values():  # roles need distinct ports
                        self.ports[role] = candidate
            try:
                self._start_once()
                return self
            except ServerStartError as err:
                last_err = err
                if not self._looks_like_bind_failure():
                    raise
                # the rare race: somebody took our port; pick new ones
                for role in self.port_roles:
                    if not ((self._fixed_port or not first_start) and role == "main"):
                        self.ports.pop(role, None)
        assert last_err is not None
        raise last_err

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` (default ``stop_timeout``)."""
        proc, self.proc = self.proc, None
        _terminate(proc, self.stop_timeout if timeout is None else timeout)
        if self._out_fh is not None:
            self._out_fh.close()
            self._out_fh = None
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def restart(self) -> _ServerBase:
        """Stop and start again on the same ports with the same data directories."""
        self.stop()
        return self.start()

    def kill(self) -> None:
        """SIGKILL without a clean shutdown (crash simulation)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.stop()

    def cleanup(self) -> None:
        """Stop and remove the base directory if this object created it."""
        self.stop()
        if self._own_base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_files(self) -> list[Path]:
        return [self.process_log]

    def log_tail(self, lines: int = 40) -> str:
        chunks = []
        for path in self.log_files():
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            tail = "\n".join(text.splitlines()[-lines:])
            chunks.append(f"--- {path} (last {lines} lines) ---\n{tail}")
        return "\n".join(chunks) if chunks else "(no log output)"

    def __enter__(self) -> _ServerBase:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = f"pid={self.proc.pid}" if self.running else "stopped"  # type: ignore[union-attr]
        return f"<{type(self).__name__} {self.ports} {state} dir={self.base_dir}>"

    # -- subclass hooks ------------------------------------------------------------

    def _prepare(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _probe(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _child_env(self) -> dict[str, str]:
        return dict(os.environ)

    # -- internals -----------------------------------------------------------------

    def _start_once(self) -> None:
        argv = self._prepare()
        self._log_offsets = {p: (p.stat().st_size if p.exists() else 0) for p in self.log_files()}
        self._out_fh = open(self.process_log, "ab")
        self._out_fh.write(f"=== {time.strftime('%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        self._out_fh.flush()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out_fh,
            stderr=subprocess.STDOUT,
            cwd=self.base_dir,
            env=self._child_env(),
            preexec_fn=_PREEXEC,
            start_new_session=True,  # a ^C in the terminal is handled by us, not the child
        )
        with _LIVE_LOCK:
            _LIVE.add(self)
        deadline = t0 + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise ServerStartError(
                    f"{self.display_name} exited with status {code} during start-up "
                    f"(ports {self.ports}).\n{self.log_tail()}"
                )
            try:
                if self._probe():
                    break
            except Exception:  # noqa: BLE001 - not ready yet
                pass
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerStartError(
                    f"{self.display_name} not ready after {self.startup_timeout:.0f}s "
                    f"(ports {self.ports}).\n{self.log_tail()}"
                )
            time.sleep(0.05)  # sync-ok: poll interval of a loop with a deadline
        self.startup_seconds = time.monotonic() - t0

    def _looks_like_bind_failure(self) -> bool:
        """Did the last start attempt log a port clash?  (Only its own output counts.)"""
        for path in self.log_files():
            try:
                with open(path, "rb") as fh:
                    fh.seek(self._log_offsets.get(path, 0))
                    text = fh.read().decode(errors="replace").lower()
            except OSError:
                continue
            if any(marker in text for marker in self._bind_failure_markers):
                return True
        return False

    @staticmethod
    def _finalize(state: dict[str, Any]) -> None:
        # runs when the object is collected or at interpreter exit
        _terminate(state.get("proc"), 5.0)
        fh = state.get("_out_fh")
        if fh is not None:
            fh.close()
        if state.get("_own_base_dir") and state.get("base_dir") is not None:
            shutil.rmtree(state["base_dir"], ignore_errors=True)


# --------------------------------------------------------------------------- Mosquitto


class MosquittoServer(_ServerBase):
    """Mosquitto 2.x on ``127.0.0.1:<free port>`` with its own config, persistence and log.

    Mosquitto 2 listens only where a ``listener`` line says, so the default
    1883 is never opened.  Persistence is on (``persistence_location`` in the
    base dir) so retained messages and persistent sessions survive
    ``restart()``.

    Extra keyword ``settings``: mosquitto.conf options that replace the defaults below or
    are added, e.g. ``{"max_queued_messages": "10", "sys_interval": "1"}``.
    """

    display_name = "mosquitto"
    binary_names = ("mosquitto",)
    debian_package = "mosquitto"
    env_var = "SPINEWATCH_MOSQUITTO"
    startup_timeout = 15.0

    def __init__(self, *args: Any, settings: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = dict(settings or {})
        self.config_file = self.base_dir / "mosquitto.conf"
        self.data_dir = self.base_dir / "data"
        self.log_file = self.base_dir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def log_files(self) -> list[Path]:
        return [self.process_log, self.log_file]

    def _prepare(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "# generated by tests/servers.py -- test broker, loopback only",
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "persistence_file mosquitto.db",
            "autosave_interval 1800",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "max_queued_messages 100000",
        ]
        lines = [ln for ln in lines if ln.split(" ", 1)[0] not in self.settings]
        lines += [f"{k} {v}" for k, v in self.settings.items()]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root, mosquitto would switch to user "mosquitto", which cannot
            # write our private tmp dir.  "user root" keeps it as is.
            lines.append("user root")
        self.config_file.write_text("\n".join(lines) + "\n")
        return [self.binary, "-c", str(self.config_file)]  # type: ignore[list-item]

    def _probe(self) -> bool:
        if not tcp_connectable(self.host, self.port):
            return False
        return self.mqtt_handshake(timeout=2.0)

    def mqtt_handshake(self, timeout: float = 5.0) -> bool:
        """A real MQTT CONNECT/CONNACK round trip with paho; True on success."""
        import paho.mqtt.client as mqtt

        result: dict[str, Any] = {}

        def on_connect(client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
            result["rc"] = reason_code

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"sw-harness-probe-{os.getpid()}-{time.monotonic_ns()}",
        )
        client.on_connect = on_connect
        try:
            client.connect(self.host, self.port, keepalive=10)
            deadline = time.monotonic() + timeout
            while "rc" not in result and time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    return False  # our broker died; whoever answers on the port is not it
                client.loop(timeout=0.05)
            ok = "rc" in result and not result["rc"].is_failure
            if ok:
                client.disconnect()
                client.loop(timeout=0.05)
            return ok
        finally:
            sock = client.socket()
            if sock is not None:
                sock.close()


# --------------------------------------------------------------------------- InfluxDB 1.x


class InfluxDB1Server(_ServerBase):
    """influxd 1.x (tested with Debian's 1.6.7) with a private config file.

    HTTP API on ``127.0.0.1:<port>``; the RPC/backup service (default 8088) is
    moved to a second free loopback port; UDP, Graphite, collectd, OpenTSDB,
    ifql, usage reporting and the ``_internal`` monitor store are off.
    """

    display_name = "influxdb1"
    binary_names = ("influxd",)
    debian_package = "influxdb"
    env_var = "SPINEWATCH_INFLUXD"
    port_roles = ("main", "rpc")
    startup_timeout = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config_file = self.base_dir / "influxdb.conf"
        self.meta_dir = self.base_dir / "meta"
        self.data_dir = self.base_dir / "data"
        self.wal_dir = self.base_dir / "wal"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def rpc_port(self) -> int:
        return self.ports["rpc"]

    def _prepare(self) -> list[str]:
        for d in (self.meta_dir, self.data_dir, self.wal_dir):
            d.mkdir(parents=True, exist_ok=True)
        conf = f"""\
# generated by tests/servers.py -- test server, loopback only
reporting-disabled = true
bind-address = "{self.host}:{self.rpc_port}"

[meta]
  dir = "{self.meta_dir}"
  retention-autocreate = true
  logging-enabled = true

[data]
  dir = "{self.data_dir}"
  wal-dir = "{self.wal_dir}"
  index-version = "inmem"
  wal-fsync-delay = "0s"
  query-log-enabled = false

[coordinator]
  write-timeout = "10s"

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "{self.host}:{self.port}"
  auth-enabled = false
  log-enabled = true
  suppress-write-log = true
  pprof-enabled = false
  https-enabled = false
  unix-socket-enabled = false

[ifql]
  enabled = false

[logging]
  format = "logfmt"
  level = "info"
  suppress-logo = true

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[continuous_queries]
  enabled = true
  log-enabled = true
"""
        self.config_file.write_text(conf)
        return [self.binary, "run", "-config", str(self.config_file)]  # type: ignore[list-item]

    def _child_env(self) -> dict[str, str]:
        # INFLUXDB_* variables override the config file; never inherit them.
        return {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}

    def _probe(self) -> bool:
        status, _ = http_request("GET", f"{self.url}/ping", timeout=2.0)
        return status == 204

    # -- convenience API -----------------------------------------------------------

    def query(self, influxql: str, db: str | None = None, *, epoch: str | None = "ns",
              method: str | None = None) -> dict[str, Any]:
        """Run InfluxQL via /query and return the parsed JSON.

        Uses GET for read statements and POST for everything else (InfluxDB
        1.x refuses e.g. CREATE via GET).  Raises ServerError on HTTP errors
        or on a statement-level ``error``.
        """
        params: dict[str, str] = {"q": influxql}
        if db:
            params["db"] = db
        if epoch:
            params["epoch"] = epoch
        if method is None:
            head = influxql.lstrip().split(None, 1)[0].upper() if influxql.strip() else ""
            method = "GET" if head in ("SELECT", "SHOW") else "POST"
        qs = urllib.parse.urlencode(params)
        if method == "GET":
            status, body = http_request("GET", f"{self.url}/query?{qs}")
        else:
            status, body = http_request(
                "POST", f"{self.url}/query", data=qs.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        if status != 200:
            raise ServerError(f"InfluxDB /query HTTP {status}: {body[:500]!r}")
        doc = json.loads(body)
        for res in doc.get("results", []):
            if "error" in res:
                raise ServerError(f"InfluxDB query error: {res['error']} (query: {influxql})")
        return doc

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"', method="POST")

    def write(self, lines: str | bytes | Iterable[str], db: str, precision: str = "ns") -> None:
        """POST line protocol to /write; raises ServerError unless HTTP 204."""
        if isinstance(lines, str):
            body = lines.encode()
        elif isinstance(lines, bytes):
            body = lines
        else:
            body = "\n".join(lines).encode()
        qs = urllib.parse.urlencode({"db": db, "precision": precision})
        status, resp = http_request("POST", f"{self.url}/write?{qs}", data=body)
        if status != 204:
            raise ServerError(f"InfluxDB /write HTTP {status}: {resp[:500]!r}")

    def points(self, influxql: str, db: str) -> list[dict[str, Any]]:
        """``query`` flattened into one dict per row (column name -> value)."""
        rows: list[dict[str, Any]] = []
        for res in self.query(influxql, db=db).get("results", []):
            for series in res.get("series", []) or []:
                cols = series["columns"]
                for values in series.get("values", []):
                    row = dict(zip(cols, values, strict=True))
                    row.update(series.get("tags", {}) or {})
                    rows.append(row)
        return rows


# --------------------------------------------------------------------------- VictoriaMetrics


class VictoriaMetricsServer(_ServerBase):
    """Single-node VictoriaMetrics on ``127.0.0.1:<port>`` with its own storage dir.

    Accepts InfluxDB line protocol on ``/write`` and ``/api/v2/write``
    (measurement ``m`` + field ``f`` become metric ``m_f``, ``db``/bucket
    becomes label ``db``).  ``-search.latencyOffset=0s`` makes fresh samples
    queryable right after ``flush()``.
    """

    display_name = "victoria-metrics"
    binary_names = ("victoria-metrics", "victoria-metrics-prod")
    debian_package = "victoria-metrics"
    env_var = "SPINEWATCH_VICTORIA_METRICS"
    startup_timeout = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.data_dir = self.base_dir / "storage"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _prepare(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return [
            self.binary,  # type: ignore[list-item]
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.data_dir}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerOutput=stderr",
            "-memory.allowedBytes=256MB",
        ]

    def _probe(self) -> bool:
        status, _ = http_request("GET", f"{self.url}/health", timeout=2.0)
        return status == 200

    # -- convenience API -----------------------------------------------------------

    def flush(self) -> None:
        """Make just-ingested samples searchable (``/internal/force_flush``)."""
        status, body = http_request("GET", f"{self.url}/internal/force_flush")
        if status != 200:
            raise ServerError(f"VictoriaMetrics force_flush HTTP {status}: {body[:300]!r}")

    def export(self, match: str = '{__name__!=""}') -> list[dict[str, Any]]:
        """Raw samples via /api/v1/export (one JSON object per series)."""
        qs = urllib.parse.urlencode({"match[]": match})
        status, body = http_request("GET", f"{self.url}/api/v1/export?{qs}")
        if status != 200:
            raise ServerError(f"VictoriaMetrics export HTTP {status}: {body[:500]!r}")
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]

    def query(self, promql: str, time_s: float | None = None) -> dict[str, Any]:
        """Instant query via /api/v1/query; returns the parsed JSON."""
        params = {"query": promql}
        if time_s is not None:
            params["time"] = f"{time_s:.3f}"
        status, body = http_request("GET", f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}")
        if status != 200:
            raise ServerError(f"VictoriaMetrics query HTTP {status}: {body[:500]!r}")
        return json.loads(body)
