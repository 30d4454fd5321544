"""`spinewatch grafana push` against a local HTTP endpoint that records requests and answers like Grafana.

Only the remote Grafana is replaced: grafana-client, its HTTP stack and our command run for real.
The answers follow Grafana's HTTP API documentation (folders, data sources, dashboards).
"""

from __future__ import annotations

import argparse

import pytest
from _http_fake import JsonApiFake

pytest.importorskip("grafana_client")

from spinewatch.service.cli.grafana import add_grafana_commands, cmd_grafana_push
from spinewatch.service.dashboards import DASHBOARDS, DATASOURCE
from spinewatch.service.dashboards.grafana_push import (
    GrafanaPushError,
)

TOKEN = "glsa_test-token-0123456789"


class FakeGrafana(JsonApiFake):
    """Grafana's folder, data source and dashboard endpoints over an in-memory store; records every request."""

    def __init__(self) -> None:
        super().__init__(f"Bearer {TOKEN}", {"message": "Unauthorized"})
        self.folders: dict[str, dict] = {}
        self.datasources: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}
        self.fail_dashboards_with: int = 0

    def route(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "folders"]:
            if method == "GET" and len(parts) == 3:
                f = self.folders.get(parts[2])
                return (200, f) if f else (404, {"message": "folder not found", "status": "not-found"})
            if method == "POST" and len(parts) == 2:
                if body["uid"] in self.folders:
                    return 409, {"message": "a folder with the same uid already exists"}
                self.folders[body["uid"]] = {"id": len(self.folders) + 1, **body}
                return 200, self.folders[body["uid"]]
        if parts[:2] == ["api", "datasources"]:
            if method == "GET" and parts[2:3] == ["uid"]:
                d = self.datasources.get(parts[3])
                return (200, d) if d else (404, {"message": "Data source not found"})
            if method == "POST" and len(parts) == 2:
                if any(d["name"] == body["name"] for d in self.datasources.values()):
                    return 409, {"message": "data source with the same name already exists"}
                self.datasources[body["uid"]] = {"id": len(self.datasources) + 1, **body}
                return 200, {"message": "Datasource added", "id": 1, "name": body["name"],
                             "datasource": self.datasources[body["uid"]]}
            if method == "PUT" and parts[2:3] == ["uid"]:
                if parts[3] not in self.datasources:
                    return 404, {"message": "Data source not found"}
                self.datasources[parts[3]] = {**self.datasources[parts[3]], **body}
                return 200, {"message": "Datasource updated", "id": 1, "name": body["name"]}
        if parts == ["api", "dashboards", "db"] and method == "POST":
            if self.fail_dashboards_with:
                return self.fail_dashboards_with, {"message": "Permission denied"}
            d = body["dashboard"]
            if body["folderUid"] not in self.folders:
                return 400, {"message": "folder not found"}
            if d["uid"] in self.dashboards and not body.get("overwrite"):
                return 412, {"message": "A dashboard with the same uid already exists", "status": "name-exists"}
            version = self.dashboards.get(d["uid"], {}).get("version", 0) + 1
            self.dashboards[d["uid"]] = {**d, "version": version, "folderUid": body["folderUid"]}
            return 200, {"id": 1, "uid": d["uid"], "url": f"/d/{d['uid']}/x", "status": "success",
                         "version": version}
        return 404, {"message": "Not found"}

    def calls(self) -> list[tuple[str, str]]:
        return [(r["method"], r["path"]) for r in self.requests]


@pytest.fixture
def grafana():
    with FakeGrafana() as g:
        yield g


def _args(grafana, **kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=None)  # the main parser's option (spinewatch/service/cli/main.py)
    add_grafana_commands(parser.add_subparsers(dest="command"))
    argv = ["grafana", "push", "--url", grafana.url, *kw.pop("argv", [])]
    return parser.parse_args(argv)


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    monkeypatch.setenv("SPINEWATCH_INFLUX_URL", "http://influxdb:8086")
    monkeypatch.setenv("SPINEWATCH_INFLUX_DB", "spinewatch")
    monkeypatch.setenv("SPINEWATCH_INFLUX_USERNAME", "grafana")
    monkeypatch.setenv("SPINEWATCH_INFLUX_PASSWORD", "read-secret")
    monkeypatch.delenv("SPINEWATCH_CONFIG", raising=False)


def test_first_push_creates_folder_datasource_and_every_dashboard(grafana, env, capsys):
    args = _args(grafana)
    assert args.func is cmd_grafana_push
    assert args.func(args) == 0
    uids = [b()["uid"] for b in DASHBOARDS.values()]
    assert grafana.calls() == [
        ("GET", "/api/folders/spinewatch"), ("POST", "/api/folders"),
        ("GET", f"/api/datasources/uid/{DATASOURCE['uid']}"), ("POST", "/api/datasources"),
        *[("POST", "/api/dashboards/db")] * len(uids),
    ]
    for r in grafana.requests:
        assert r["headers"]["Authorization"] == f"Bearer {TOKEN}"
    folder = grafana.requests[1]["json"]
    assert folder == {"title": "SpineWatch", "uid": "spinewatch"}
    ds = grafana.requests[3]["json"]
    assert ds["uid"] == DATASOURCE["uid"] and ds["type"] == "influxdb" and ds["access"] == "proxy"
    assert ds["url"] == "http://influxdb:8086" and ds["jsonData"]["dbName"] == "spinewatch"
    assert ds["user"] == "grafana" and ds["secureJsonData"] == {"password": "read-secret"}
    posted = [r["json"] for r in grafana.requests[4:]]
    assert [p["dashboard"]["uid"] for p in posted] == uids
    for p, build in zip(posted, DASHBOARDS.values(), strict=True):
        assert p["folderUid"] == "spinewatch" and p["overwrite"] is True
        assert "id" not in p["dashboard"]  # Grafana matches by uid
        assert p["dashboard"] == {k: v for k, v in build().items() if k != "id"}
    assert "created" in capsys.readouterr().out


def test_second_push_updates_in_place(grafana, env, capsys):
    args = _args(grafana, argv=["--datasource-url", "http://10.0.0.5:8086"])
    cmd_grafana_push(args)
    n_first = len(grafana.requests)
    cmd_grafana_push(args)
    second = grafana.calls()[n_first:]
    assert second[:3] == [("GET", "/api/folders/spinewatch"), ("GET", f"/api/datasources/uid/{DATASOURCE['uid']}"),
                          ("PUT", f"/api/datasources/uid/{DATASOURCE['uid']}")]
    assert second[3:] == [("POST", "/api/dashboards/db")] * len(DASHBOARDS)
    assert len(grafana.folders) == 1 and len(grafana.datasources) == 1
    assert grafana.datasources[DATASOURCE["uid"]]["url"] == "http://10.0.0.5:8086"
    assert {d["version"] for d in grafana.dashboards.values()} == {2}


def test_influxdb2_datasource_uses_the_bucket_and_a_token_header(grafana, env, monkeypatch):
    monkeypatch.delenv("SPINEWATCH_INFLUX_DB")
    monkeypatch.setenv("SPINEWATCH_INFLUX_ORG", "clinic")
    monkeypatch.setenv("SPINEWATCH_INFLUX_BUCKET", "spinewatch")
    monkeypatch.setenv("SPINEWATCH_INFLUX_TOKEN", "influx-read-token")
    cmd_grafana_push(_args(grafana))
    ds = grafana.requests[3]["json"]
    assert ds["jsonData"]["dbName"] == "spinewatch" and ds["jsonData"]["httpHeaderName1"] == "Authorization"
    assert ds["secureJsonData"] == {"httpHeaderValue1": "Token influx-read-token"}


def test_refusals_name_the_step_and_the_status(grafana, env, monkeypatch):
    grafana.fail_dashboards_with = 403
    with pytest.raises(GrafanaPushError) as err:
        cmd_grafana_push(_args(grafana))
    assert err.value.status == 403 and "dashboard spinewatch-clinic" in str(err.value)
    monkeypatch.setenv("GRAFANA_TOKEN", "wrong")
    with pytest.raises(GrafanaPushError) as err:
        cmd_grafana_push(_args(grafana))
    assert err.value.status == 401 and "get folder" in str(err.value)


def test_missing_token_is_a_config_error(grafana, env, monkeypatch):
    from spinewatch.errors import ConfigError

    monkeypatch.delenv("GRAFANA_TOKEN")
    with pytest.raises(ConfigError, match="GRAFANA_TOKEN"):
        cmd_grafana_push(_args(grafana))
    assert grafana.requests == []


def test_without_grafana_client_the_error_says_which_extra_to_install(monkeypatch):
    import sys

    from spinewatch.errors import SpineWatchError
    from spinewatch.service.dashboards.grafana_push import connect

    monkeypatch.setitem(sys.modules, "grafana_client", None)  # import fails as if not installed
    with pytest.raises(SpineWatchError, match=r"pip install 'spinewatch\[grafana\]'"):
        connect("http://127.0.0.1:1", TOKEN)
