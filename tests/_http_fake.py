"""In-memory stand-ins for HTTP JSON APIs that cannot run here (Grafana, InfluxDB 2.x's admin API).

A subclass answers :meth:`JsonApiFake.route`; the base serves it on a free loopback port, checks
the ``Authorization`` header, records every request and replies JSON. Start it with ``with`` or
:meth:`start`, stop it with :meth:`stop`.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["JsonApiFake"]


class JsonApiFake:
    """A JSON API on ``self.url``.

    Args:
        authorization: the ``Authorization`` header every request but ``open_paths`` must carry.
        unauthorized: the JSON body of the 401 reply to any other header.
        open_paths: paths answered without credentials (e.g. a health check).

    Attributes:
        requests: every request, as ``{"method", "path", "query", "headers", "json"}``.
    """

    def __init__(self, authorization: str, unauthorized: dict[str, Any],
                 open_paths: frozenset[str] = frozenset()) -> None:
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                fake.requests.append({"method": self.command, "path": url.path, "query": query,
                                      "headers": dict(self.headers), "json": body})
                if url.path not in open_paths and self.headers.get("Authorization") != authorization:
                    code, reply = 401, unauthorized
                else:
                    code, reply = fake.route(self.command, url.path, query, body)
                data = json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        """The status and JSON reply to an authorised request (``path`` without its query string)."""
        raise NotImplementedError

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self) -> JsonApiFake:  # noqa: PYI034 - subclasses return themselves too
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
