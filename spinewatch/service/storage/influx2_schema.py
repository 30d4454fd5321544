"""InfluxDB 2.x / Cloud schema set-up (``spinewatch influx init`` with org, bucket and token).

The same layout as on 1.x (spinewatch/service/storage/influx1_schema.py, docs/storage.md), built from 2.x
parts so that the InfluxQL of the dashboards and reports runs unchanged through DBRP mappings:

| 1.x | 2.x |
|---|---|
| database ``{bucket}``, RP ``raw`` (default) | bucket ``{bucket}`` (``raw_retention``), default DBRP ``{bucket}/raw`` |
| RP ``trend`` (forever) | bucket ``{bucket}_trend`` (no expiry), DBRP ``{bucket}/trend`` |
| RP ``settings`` (forever) | bucket ``{bucket}_trend`` too, DBRP ``{bucket}/settings`` (ingest writes settings there) |
| continuous queries ``posture_1m``, ``posture_1m_still`` | task ``spinewatch_posture_1m`` (Flux, every minute) |
| continuous query ``slouch_copy`` | task ``spinewatch_slouch_copy`` (Flux, every minute, last hour) |

Everything goes through the documented HTTP API (``/api/v2/orgs``, ``/buckets``, ``/dbrps``,
``/tasks``, ``/query``) and is idempotent: existing buckets get their retention updated,
existing mappings are kept, existing tasks get the current Flux.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from spinewatch.errors import ConnectionFailed
from spinewatch.service.storage.base import (
    HTTP_TIMEOUT_S,
    LEGACY_SAMPLE_S,
    SETTINGS_MEASUREMENTS,
    SETTINGS_RP,
    WEAR_FIELD,
    StoreRejected,
)
from spinewatch.service.storage.influx1_schema import parse_retention_s

POSTURE_TASK: Final = "spinewatch_posture_1m"
SLOUCH_TASK: Final = "spinewatch_slouch_copy"


@dataclass(frozen=True, slots=True)
class Influx2Schema:
    """Layout of one SpineWatch bucket on InfluxDB 2.x.

    Attributes:
        bucket: the raw bucket the ingest worker writes (``SPINEWATCH_INFLUX_BUCKET``); also
            the InfluxQL database name of the DBRP mappings.
        raw_retention: how long 100 Hz samples are kept: ``90d``, ``12w``, ``2160h``, ``INF``.
    """

    bucket: str
    raw_retention: str = "90d"

    def __post_init__(self) -> None:
        parse_retention_s(self.raw_retention)  # raises ValueError naming the accepted forms

    @property
    def trend_bucket(self) -> str:
        return f"{self.bucket}_trend"

    @property
    def raw_retention_s(self) -> int:
        """Raw retention in seconds; 0 = forever."""
        return parse_retention_s(self.raw_retention)

    def posture_flux(self, start: str = "-5m") -> str:
        """Per-minute means, sample counts, upright-still counts (``still_samples``), slouch
        fraction, wear seconds (``wear_s``) and upright-still seconds (``still_s``) of ``posture``
        into ``posture_1m``, as the 1.x continuous queries do.

        Wear seconds are the sum of the points' own periods (``wear_s``, beside every
        ``flexion_deg``); a point stored without one (before the field existed) counts
        LEGACY_SAMPLE_S, as in the 1.x backfill.

        Each run re-aggregates the last few minutes (``start``), so a minute that was still
        filling at the previous run, or late data, is rewritten with the complete figures
        (same series and time: an overwrite, not a duplicate).
        """
        return f'''data = from(bucket: "{self.bucket}")
    |> range(start: {start})
    |> filter(fn: (r) => r._measurement == "posture")
means = data
    |> filter(fn: (r) => r._field == "flexion_deg" or r._field == "lateral_deg" or r._field == "state")
    |> aggregateWindow(every: 1m, fn: mean, createEmpty: false, timeSrc: "_start")
    |> map(fn: (r) => ({{r with _field: if r._field == "state" then "slouch_fraction" else r._field}}))
samples = data
    |> filter(fn: (r) => r._field == "flexion_deg")
    |> aggregateWindow(every: 1m, fn: count, createEmpty: false, timeSrc: "_start")
    |> map(fn: (r) => ({{r with _field: "samples"}}))
still = data
    |> filter(fn: (r) => r._field == "activity" and r._value == 2)
    |> aggregateWindow(every: 1m, fn: count, createEmpty: false, timeSrc: "_start")
    |> map(fn: (r) => ({{r with _field: "still_samples"}}))
periods = data
    |> filter(fn: (r) => r._field == "flexion_deg" or r._field == "{WEAR_FIELD}" or r._field == "activity")
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> filter(fn: (r) => exists r.flexion_deg)
    |> map(fn: (r) => ({{r with _value:
        if exists r.{WEAR_FIELD} then float(v: r.{WEAR_FIELD}) else {LEGACY_SAMPLE_S!r}}}))
wear = periods
    |> aggregateWindow(every: 1m, fn: sum, createEmpty: false, timeSrc: "_start")
    |> set(key: "_field", value: "wear_s")
still_s = periods
    |> filter(fn: (r) => exists r.activity and r.activity == 2)
    |> aggregateWindow(every: 1m, fn: sum, createEmpty: false, timeSrc: "_start")
    |> set(key: "_field", value: "still_s")
union(tables: [means, samples, still, wear, still_s])
    |> set(key: "_measurement", value: "posture_1m")
    |> to(bucket: "{self.trend_bucket}")
'''

    def slouch_flux(self, start: str = "-1h") -> str:
        """Copy every ``slouch`` episode of the last hour into the trend bucket (kept forever)."""
        return f'''from(bucket: "{self.bucket}")
    |> range(start: {start})
    |> filter(fn: (r) => r._measurement == "slouch")
    |> to(bucket: "{self.trend_bucket}")
'''

    def settings_flux(self) -> str:
        """Copy the settings stored before DBRP ``settings`` existed into the trend bucket (backfill)."""
        wanted = " or ".join(f'r._measurement == "{m}"' for m in SETTINGS_MEASUREMENTS)
        return f'''from(bucket: "{self.bucket}")
    |> range(start: 0)
    |> filter(fn: (r) => {wanted})
    |> to(bucket: "{self.trend_bucket}")
'''

    def task_flux(self, name: str) -> str:
        body = self.posture_flux() if name == POSTURE_TASK else self.slouch_flux()
        return f'option task = {{name: "{name}", every: 1m, offset: 10s}}\n\n{body}'


class Influx2Admin:
    """The few InfluxDB 2.x API calls ``influx init`` needs (token needs write access to
    buckets, DBRP mappings and tasks: an operator or all-access token)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Token {token}", "Content-Type": "application/json",
                         "Accept": "application/json"}

    def call(self, method: str, path: str, params: dict[str, str] | None = None,
             body: dict[str, Any] | None = None) -> dict[str, Any]:
        qs = f"?{urllib.parse.urlencode(params)}" if params else ""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}{qs}", data=data, headers=self._headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            if exc.code == 404 and method == "GET":
                return {}
            if 400 <= exc.code < 500:
                raise StoreRejected(f"{method} {self.url}{path}: HTTP {exc.code}: {detail}") from exc
            raise ConnectionFailed(self.url, f"HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ConnectionFailed(self.url, str(getattr(exc, "reason", exc))) from exc
        if not raw.strip() or path == "/api/v2/query":  # a query answers in annotated CSV
            return {}
        return dict(json.loads(raw))

    def org_id(self, org: str) -> str:
        answer = self.call("GET", "/api/v2/orgs", {"org": org})
        if "orgs" not in answer:
            raise StoreRejected(f"no InfluxDB 2.x API at {self.url} (GET /api/v2/orgs found nothing); "
                                "for InfluxDB 1.x set SPINEWATCH_INFLUX_DB instead of _ORG/_BUCKET/_TOKEN")
        orgs = answer["orgs"]
        if not orgs:
            raise StoreRejected(f"organisation {org!r} not found at {self.url} (SPINEWATCH_INFLUX_ORG)")
        return str(orgs[0]["id"])


def apply_influx2_schema(admin: Influx2Admin, org: str, schema: Influx2Schema, *, backfill: bool = False,
                         say: Callable[[str], None] = print) -> None:
    """Create or update the buckets, DBRP mappings and tasks of ``schema`` (idempotent).

    Raises:
        ConnectionFailed: the server could not be reached (retry later).
        StoreRejected: the server refused a call (bad token, missing permission, bad org).
    """
    org_id = admin.org_id(org)
    bucket_ids: dict[str, str] = {}
    for name, seconds in ((schema.bucket, schema.raw_retention_s), (schema.trend_bucket, 0)):
        rules = [{"type": "expire", "everySeconds": seconds}] if seconds else []
        found = admin.call("GET", "/api/v2/buckets", {"orgID": org_id, "name": name}).get("buckets", [])
        if found:
            bucket_ids[name] = str(found[0]["id"])
            admin.call("PATCH", f"/api/v2/buckets/{bucket_ids[name]}", body={"retentionRules": rules})
            say(f"ok: bucket {name} (retention {'forever' if not seconds else f'{seconds} s'}, updated)")
        else:
            made = admin.call("POST", "/api/v2/buckets", body={"orgID": org_id, "name": name, "retentionRules": rules})
            bucket_ids[name] = str(made["id"])
            say(f"ok: bucket {name} (retention {'forever' if not seconds else f'{seconds} s'}, created)")
    for rp, name, default in (("raw", schema.bucket, True), ("trend", schema.trend_bucket, False),
                              (SETTINGS_RP, schema.trend_bucket, False)):
        found = admin.call("GET", "/api/v2/dbrps", {"orgID": org_id, "db": schema.bucket, "rp": rp}).get("content", [])
        if found:
            say(f"ok: DBRP {schema.bucket}/{rp} -> bucket {name} (exists)")
            continue
        admin.call("POST", "/api/v2/dbrps", body={
            "orgID": org_id, "bucketID": bucket_ids[name], "database": schema.bucket,
            "retention_policy": rp, "default": default})
        say(f"ok: DBRP {schema.bucket}/{rp} -> bucket {name} (created)")
    for task in (POSTURE_TASK, SLOUCH_TASK):
        flux = schema.task_flux(task)
        found = admin.call("GET", "/api/v2/tasks", {"orgID": org_id, "name": task}).get("tasks", [])
        if found:
            admin.call("PATCH", f"/api/v2/tasks/{found[0]['id']}", body={"flux": flux, "status": "active"})
            say(f"ok: task {task} (updated)")
        else:
            admin.call("POST", "/api/v2/tasks", body={
                "orgID": org_id, "flux": flux, "status": "active",
                "description": "SpineWatch downsampling (spinewatch influx init)"})
            say(f"ok: task {task} (created)")
    if backfill:
        for flux in (schema.posture_flux(start="0"), schema.slouch_flux(start="0"), schema.settings_flux()):
            admin.call("POST", "/api/v2/query", {"orgID": org_id}, {"query": flux, "type": "flux"})
        say("ok: backfill of the trend bucket from all raw data")
