"""Folder, data source and dashboards into an existing Grafana (the work of ``spinewatch grafana push``).

Idempotent: run it again after changing the dashboards (or the InfluxDB address) and Grafana
holds the same objects, updated. Talks to Grafana's HTTP API through ``grafana-client``
(the optional extra ``spinewatch[grafana]``), authenticated by a service-account token:

| step | HTTP calls (Grafana HTTP API) |
|---|---|
| folder | ``GET /api/folders/{uid}``; on 404 ``POST /api/folders`` ``{"uid", "title"}`` |
| data source | ``GET /api/datasources/uid/{uid}``; then ``PUT`` to the same path, or on 404 ``POST /api/datasources`` |
| each dashboard | ``POST /api/dashboards/db`` ``{"dashboard", "folderUid", "overwrite": true, "message"}`` |
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any, Final

from spinewatch.errors import ConfigError, SpineWatchError
from spinewatch.service.config import InfluxConfig, redact_url
from spinewatch.service.transport.neterrors import network_reason

_LOGGER = logging.getLogger(__name__)

FOLDER_UID: Final = "spinewatch"
FOLDER_TITLE: Final = "SpineWatch"
DATASOURCE_NAME: Final = "SpineWatch InfluxDB"
PUSH_MESSAGE: Final = "spinewatch grafana push"
HTTP_TIMEOUT_S: Final = 10.0  # per request; a push is a handful of small requests


class GrafanaPushError(SpineWatchError):
    """Grafana refused a request or could not be reached; ``status`` is the HTTP status (0: none)."""

    def __init__(self, step: str, status: int, detail: str) -> None:
        self.step = step
        self.status = status
        super().__init__(f"grafana push: {step}: HTTP {status}: {detail}" if status
                         else f"grafana push: {step}: {detail}")


@dataclass(frozen=True, slots=True)
class PushResult:
    """What the push did: ``created`` or ``updated`` per object, dashboards by uid."""

    folder: str
    datasource: str
    dashboards: tuple[str, ...]


def datasource_model(influx: InfluxConfig, uid: str, url: str = "") -> dict[str, Any]:
    """The InfluxQL data source the dashboards use (``uid`` = their datasource uid).

    Args:
        influx: where SpineWatch writes; 1.x (``db``, user/password) or 2.x/3.x (``bucket``, token,
            queried with InfluxQL through the bucket's DBRP mapping).
        uid: data source uid referenced by every panel.
        url: InfluxDB URL as Grafana's server reaches it; default ``influx.url``.
    """
    ds: dict[str, Any] = {
        "uid": uid, "name": DATASOURCE_NAME, "type": "influxdb", "access": "proxy",
        "url": url or influx.url, "isDefault": False,
        "jsonData": {"version": "InfluxQL", "httpMode": "GET"},
        "secureJsonData": {},
    }
    if influx.kind == "v1":
        ds["database"] = influx.db
        ds["jsonData"]["dbName"] = influx.db
        if influx.username:
            ds["user"] = influx.username
            ds["secureJsonData"]["password"] = influx.password
    else:
        ds["database"] = influx.bucket
        ds["jsonData"].update(dbName=influx.bucket, httpHeaderName1="Authorization")
        ds["secureJsonData"]["httpHeaderValue1"] = f"Token {influx.token}"
    return ds


def connect(url: str, token: str) -> Any:
    """A ``grafana_client.GrafanaApi`` for ``url`` with a bearer token (import deferred: optional extra)."""
    try:
        from grafana_client import GrafanaApi
    except ImportError as exc:
        raise SpineWatchError(
            "grafana push needs grafana-client: pip install 'spinewatch[grafana]'"
        ) from exc
    return GrafanaApi.from_url(url, credential=token, timeout=HTTP_TIMEOUT_S)


def _status(exc: Exception) -> int:
    return int(getattr(exc, "status_code", 0) or 0)


def _call(step: str, fn: Any, *args: Any) -> Any:
    from grafana_client.client import GrafanaException

    try:
        return fn(*args)
    except GrafanaException as exc:
        raise GrafanaPushError(step, _status(exc), str(exc.message)) from exc
    except OSError as exc:  # connection refused, DNS, TLS, timeout (niquests' errors are OSErrors)
        raise GrafanaPushError(step, 0, f"cannot reach Grafana: {network_reason(exc)} "
                                        "(is it running? check --url / GRAFANA_URL)") from exc


def check_url(url: str, source: str) -> str:
    """``url`` without a trailing slash, if it is an http(s) URL with a host; else ConfigError naming ``source``."""
    parts = urllib.parse.urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ConfigError(source, redact_url(url),
                          "Grafana's base URL with its scheme, e.g. https://grafana.example.org or "
                          "http://127.0.0.1:3000")
    return url.rstrip("/")


def _exists(step: str, fn: Any, uid: str) -> bool:
    from grafana_client.client import GrafanaClientError

    try:
        _call(step, fn, uid)
        return True
    except GrafanaPushError as exc:
        if exc.status == 404 and isinstance(exc.__cause__, GrafanaClientError):
            return False
        raise


def push(api: Any, dashboards: list[dict[str, Any]], datasource: dict[str, Any],
         folder_uid: str = FOLDER_UID, folder_title: str = FOLDER_TITLE) -> PushResult:
    """Create or update the folder, the data source and every dashboard.

    Args:
        api: a ``grafana_client.GrafanaApi`` (see :func:`connect`).
        dashboards: dashboard models (``uid`` set; ``id`` is dropped so Grafana matches by uid).
        datasource: from :func:`datasource_model`.
        folder_uid, folder_title: the folder holding the dashboards.

    Raises:
        GrafanaPushError: a request failed (HTTP status and Grafana's message).
    """
    if _exists("get folder", api.folder.get_folder, folder_uid):
        folder = "exists"
    else:
        _call("create folder", api.folder.create_folder, folder_title, folder_uid)
        folder = "created"
    uid = datasource["uid"]
    if _exists("get data source", api.datasource.get_datasource_by_uid, uid):
        _call("update data source", api.datasource.update_datasource_by_uid, uid, datasource)
        ds_action = "updated"
    else:
        _call("create data source", api.datasource.create_datasource, datasource)
        ds_action = "created"
    done = []
    for d in dashboards:
        model = {k: v for k, v in d.items() if k != "id"}
        _call(f"dashboard {d['uid']}", api.dashboard.update_dashboard, {
            "dashboard": model, "folderUid": folder_uid, "overwrite": True, "message": PUSH_MESSAGE,
        })
        done.append(d["uid"])
        _LOGGER.info("pushed dashboard %s", d["uid"])
    return PushResult(folder, ds_action, tuple(done))
