"""A small HTTP health endpoint: ``/healthz`` (JSON) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_LOGGER = logging.getLogger(__name__)


def prometheus_text(snapshot: dict[str, Any], prefix: str = "spinewatch_ingest") -> str:
    """Numeric and boolean fields as gauges/counters (None: omitted); ``rejected`` as a labelled
    counter, ``transit_lost`` as a gauge labelled by patient and device."""
    lines = []
    for key, value in snapshot.items():
        if isinstance(value, bool):
            lines.append(f"{prefix}_{key} {int(value)}")
        elif isinstance(value, (int, float)):
            lines.append(f"{prefix}_{key} {value}")
        elif key == "rejected" and isinstance(value, dict):
            lines.append(f"# TYPE {prefix}_rejected_total counter")
            lines.extend(f'{prefix}_rejected_total{{reason="{r}"}} {n}' for r, n in sorted(value.items()))
        elif key == "transit_lost" and isinstance(value, dict):
            # posture messages lost between bridge and database, per device ("patient/device" keys)
            lines.append(f"# TYPE {prefix}_transit_lost_messages_by_device gauge")
            for pd, n in sorted(value.items()):
                patient, _, device = pd.partition("/")
                lines.append(f'{prefix}_transit_lost_messages_by_device{{patient="{patient}",device="{device}"}} {n}')
    return "\n".join(lines) + "\n"


class HealthServer:
    """Serves ``snapshot()`` over HTTP in a daemon thread.

    Args:
        host, port: where to listen (port 0 picks a free port; see :attr:`port`).
        snapshot: returns the current status dict; ``status != "ok"`` answers HTTP 503.
    """

    def __init__(self, host: str, port: int, snapshot: Callable[[], dict[str, Any]]) -> None:
        snap = snapshot

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                data = snap()
                if self.path.split("?")[0] == "/healthz":
                    body = json.dumps(data).encode()
                    code, ctype = (200 if data.get("status") == "ok" else 503), "application/json"
                elif self.path.split("?")[0] == "/metrics":
                    body, code, ctype = prometheus_text(data).encode(), 200, "text/plain; version=0.0.4"
                else:
                    body, code, ctype = b"not found: try /healthz or /metrics\n", 404, "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: object) -> None:
                _LOGGER.debug("health: " + fmt, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> HealthServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
