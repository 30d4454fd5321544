"""`spinewatch influx init` on InfluxDB 2.x: buckets, DBRP mappings and downsampling tasks.

No InfluxDB 2.x server can run on the test machines, so the server is the one part replaced:
an in-memory HTTP endpoint implementing the documented calls (/api/v2/orgs, /buckets,
/dbrps, /tasks, /query) that records every request. The real `spinewatch` CLI and HTTP code
run against it.
"""

from __future__ import annotations

import pytest
from _http_fake import JsonApiFake

from spinewatch.service.cli import main
from spinewatch.service.storage.influx2_schema import POSTURE_TASK, SLOUCH_TASK, Influx2Schema

TOKEN = "operator-token-0123"
ORG_ID = "0a1b2c3d4e5f6a7b"


class FakeInflux2(JsonApiFake):
    """The InfluxDB 2.x API calls `influx init` makes, over in-memory state."""

    def __init__(self) -> None:
        super().__init__(f"Token {TOKEN}", {"code": "unauthorized", "message": "unauthorized access"})
        self.buckets: dict[str, dict] = {}
        self.dbrps: list[dict] = []
        self.tasks: dict[str, dict] = {}
        self.queries: list[str] = []

    def route(self, method: str, path: str, q: dict, body: dict | None) -> tuple[int, dict]:
        if path == "/api/v2/orgs" and method == "GET":
            return 200, {"orgs": [{"id": ORG_ID, "name": "clinic"}] if q.get("org") == "clinic" else []}
        if path == "/api/v2/buckets":
            if method == "GET":
                return 200, {"buckets": [b for b in self.buckets.values() if b["name"] == q.get("name")]}
            if body["orgID"] != ORG_ID:
                return 404, {"code": "not found", "message": "organization not found"}
            b = {"id": f"b{len(self.buckets):015d}", **body}
            self.buckets[b["id"]] = b
            return 201, b
        if path.startswith("/api/v2/buckets/") and method == "PATCH":
            b = self.buckets[path.rsplit("/", 1)[1]]
            b.update(body)
            return 200, b
        if path == "/api/v2/dbrps":
            if method == "GET":
                return 200, {"content": [d for d in self.dbrps
                                         if d["database"] == q["db"] and d["retention_policy"] == q["rp"]]}
            if body["bucketID"] not in self.buckets:
                return 400, {"code": "invalid", "message": "bucket not found"}
            self.dbrps.append({"id": f"d{len(self.dbrps)}", **body})
            return 201, {"content": self.dbrps[-1]}
        if path == "/api/v2/tasks":
            if method == "GET":
                return 200, {"tasks": [t for t in self.tasks.values() if t["name"] == q.get("name")]}
            name = body["flux"].split('name: "')[1].split('"')[0]
            t = {"id": f"t{len(self.tasks)}", "name": name, **body}
            self.tasks[t["id"]] = t
            return 201, t
        if path.startswith("/api/v2/tasks/") and method == "PATCH":
            t = self.tasks[path.rsplit("/", 1)[1]]
            t.update(body)
            return 200, t
        if path == "/api/v2/query" and method == "POST":
            self.queries.append(body["query"])
            return 200, {}
        return 404, {"code": "not found", "message": "path not found"}


@pytest.fixture
def influx2(monkeypatch):
    with FakeInflux2() as f:
        for k, v in {"SPINEWATCH_INFLUX_URL": f.url, "SPINEWATCH_INFLUX_ORG": "clinic",
                     "SPINEWATCH_INFLUX_BUCKET": "spinewatch", "SPINEWATCH_INFLUX_TOKEN": TOKEN}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("SPINEWATCH_INFLUX_DB", raising=False)
        yield f


def by_name(fake: FakeInflux2) -> dict[str, dict]:
    return {b["name"]: b for b in fake.buckets.values()}


def test_init_makes_raw_and_trend_buckets_the_dbrp_mappings_and_two_tasks(influx2, capsys):
    """Settings get DBRP "settings", onto the trend bucket: they must outlive the raw retention."""
    assert main(["influx", "init", "--raw-retention", "30d"]) == 0
    b = by_name(influx2)
    assert b["spinewatch"]["retentionRules"] == [{"type": "expire", "everySeconds": 30 * 86400}]
    assert b["spinewatch_trend"]["retentionRules"] == []  # forever
    assert all(x["orgID"] == ORG_ID for x in b.values())
    maps = {(d["database"], d["retention_policy"]): (d["bucketID"], d["default"]) for d in influx2.dbrps}
    assert maps == {("spinewatch", "raw"): (b["spinewatch"]["id"], True),
                    ("spinewatch", "trend"): (b["spinewatch_trend"]["id"], False),
                    ("spinewatch", "settings"): (b["spinewatch_trend"]["id"], False)}
    tasks = {t["name"]: t for t in influx2.tasks.values()}
    assert set(tasks) == {POSTURE_TASK, SLOUCH_TASK} and all(t["status"] == "active" for t in tasks.values())
    assert 'to(bucket: "spinewatch_trend")' in tasks[POSTURE_TASK]["flux"]
    assert "every: 1m" in tasks[POSTURE_TASK]["flux"]
    out = capsys.readouterr().out
    assert "bucket spinewatch_trend (retention forever, created)" in out
    assert "task spinewatch_posture_1m (created)" in out


def test_running_init_again_updates_in_place_without_duplicates(influx2, capsys):
    assert main(["influx", "init", "--raw-retention", "30d"]) == 0
    assert main(["influx", "init", "--raw-retention", "12w", "--backfill"]) == 0
    b = by_name(influx2)
    assert len(influx2.buckets) == 2 and len(influx2.dbrps) == 3 and len(influx2.tasks) == 2
    assert b["spinewatch"]["retentionRules"] == [{"type": "expire", "everySeconds": 12 * 7 * 86400}]
    assert [r["method"] for r in influx2.requests if r["path"].startswith("/api/v2/tasks/")] == ["PATCH", "PATCH"]
    # the backfill runs the tasks' Flux once over all raw data, and copies the settings stored so far
    assert len(influx2.queries) == 3 and all("range(start: 0)" in q for q in influx2.queries)
    assert 'r._measurement == "patient_config"' in influx2.queries[2] and "spinewatch_trend" in influx2.queries[2]


def test_the_posture_task_mirrors_the_1x_continuous_query():
    """Same aggregates and names as POSTURE_1M_SELECT: the trend dashboards read either."""
    flux = Influx2Schema("sw").posture_flux()
    for piece in ('r._field == "flexion_deg"', 'r._field == "lateral_deg"', "fn: mean", "fn: count",
                  '"slouch_fraction"', '_field: "samples"', '_field: "still_samples"', "r._value == 2",
                  'value: "posture_1m"', 'timeSrc: "_start"'):
        assert piece in flux
    # wear seconds from each point's own period (a point without wear_s: 0.01 s), as wear_s and still_s
    for piece in ('r._field == "wear_s"', 'pivot(rowKey: ["_time"]', "exists r.flexion_deg",
                  "if exists r.wear_s then float(v: r.wear_s) else 0.01", "fn: sum",
                  'value: "wear_s"', 'value: "still_s"', "r.activity == 2"):
        assert piece in flux


def test_a_wrong_org_a_bad_token_and_a_1x_server_are_one_line_errors(influx2, monkeypatch, capsys):
    monkeypatch.setenv("SPINEWATCH_INFLUX_ORG", "elsewhere")
    assert main(["influx", "init"]) != 0
    assert "organisation 'elsewhere' not found" in capsys.readouterr().err
    monkeypatch.setenv("SPINEWATCH_INFLUX_ORG", "clinic")
    monkeypatch.setenv("SPINEWATCH_INFLUX_TOKEN", "wrong")
    assert main(["influx", "init"]) != 0
    assert "HTTP 401" in capsys.readouterr().err
    assert influx2.buckets == {}
    assert main(["influx", "init", "--raw-retention", "soon"]) == 2
    assert "--raw-retention='soon'" in capsys.readouterr().err
