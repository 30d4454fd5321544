"""`spinewatch export`: what was published through the real broker and ingest comes back out.

A known script (two devices, 1 Hz samples for four hours around midnight, some nulls, some
messages without state/activity, slouch episodes, a patient config in Europe/Berlin) is
published to a real Mosquitto and written by real ingest workers into a real InfluxDB 1.x
and into SQLite. 1 Hz instead of the sensors' 100 Hz keeps the test small; the wire format
allows any sample period and the export code does not depend on it.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from _mqtt_helpers import TestClient

from spinewatch.model import PostureBatch, SlouchEvent
from spinewatch.service.cli import main
from spinewatch.service.cli.export import Progress
from spinewatch.service.config import Config
from spinewatch.service.ingest.worker import IngestWorker
from spinewatch.service.reports.export import (
    EPISODE_COLUMNS,
    POSTURE_COLUMNS,
    export,
    export_paths,
)
from spinewatch.service.storage import Influx1Store, SqliteStore, influx
from spinewatch.service.transport import wire
from spinewatch.service.transport.patient_config import PatientConfig, encode_patient_config

pytestmark = pytest.mark.network

NS = 10**9
PATIENT = "pe-1"


def utc_ns(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()) * NS


T_START = utc_ns("2026-03-01T22:00:00")  # four hours of data: 22:00Z to 02:00Z
T_END = utc_ns("2026-03-02T02:00:00")
BERLIN_MIDNIGHT = utc_ns("2026-03-01T23:00:00")  # 2026-03-02 00:00 CET
DT = NS  # 1 Hz


def script() -> tuple[list[PostureBatch], list[SlouchEvent]]:
    """Posture messages of d1 (60 samples, starting on :30 s, so messages straddle every
    hour) and d2 (45 samples; every other message without state/activity), and episodes."""
    rng = np.random.default_rng(8)
    batches = []
    for dev, first, n in (("d1", T_START + 30 * NS, 60), ("d2", T_START, 45)):
        t0, k = first, 0
        while t0 < T_END:
            m = min(n, (T_END - t0) // DT)
            flex = np.round(rng.uniform(-10, 45, m), 2)
            lat = np.round(rng.uniform(-8, 8, m), 2)
            if k % 7 == 3:
                flex[2] = lat[5] = np.nan  # sent as null
                flex[9] = lat[9] = np.nan  # no angle at all: not a point (InfluxDB has no NaN)
            bare = dev == "d2" and k % 2 == 1
            state = np.zeros(0, np.int8) if bare else (flex > 20).astype(np.int8)
            act = np.zeros(0, np.int8) if bare else rng.integers(0, 4, m).astype(np.int8)
            batches.append(PostureBatch(PATIENT, dev, t0, DT, flex, lat, state, act))
            t0, k = t0 + m * DT, k + 1
    events = [
        SlouchEvent(PATIENT, "d1", utc_ns("2026-03-01T22:40:00"), utc_ns("2026-03-01T22:41:15"), 33.3, 27.1),
        SlouchEvent(PATIENT, "d2", utc_ns("2026-03-01T23:30:00"), utc_ns("2026-03-01T23:30:40"), 41.0, 30.5),
        SlouchEvent(PATIENT, "d1", utc_ns("2026-03-02T01:15:00"), utc_ns("2026-03-02T01:17:00"), 25.5, 22.25),
    ]
    return batches, events


def expected_rows(batches: list[PostureBatch]) -> list[tuple]:
    """(time_utc_ns, device, flexion_deg, lateral_deg, state, activity) with None for not sent."""
    rows = []
    for b in batches:
        for i in range(len(b.flexion_deg)):
            f, la = float(b.flexion_deg[i]), float(b.lateral_deg[i])
            if np.isnan(f) and np.isnan(la):
                continue
            rows.append((b.t0_ns + i * b.dt_ns, b.device, None if np.isnan(f) else f, None if np.isnan(la) else la,
                         int(b.state[i]) if len(b.state) else None, int(b.activity[i]) if len(b.activity) else None))
    return sorted(rows, key=lambda r: (r[0], r[1]))


def _worker(mosquitto, store) -> IngestWorker:
    cfg = Config.load({"SPINEWATCH_MQTT_URL": mosquitto.url, "SPINEWATCH_WORKER_ID": f"x-{uuid.uuid4().hex[:8]}"})
    mqtt = dataclasses.replace(cfg.mqtt, share_group=f"g{uuid.uuid4().hex[:8]}")
    w = IngestWorker(mqtt, dataclasses.replace(cfg.ingest, batch_interval_s=0.2), store, "5")
    w.start()
    assert w.subscribed.wait(10), "ingest did not subscribe"
    return w


@pytest.fixture(scope="module")
def published(mosquitto, influxdb1, tmp_path_factory):
    """The script, published once, written by one ingest worker into InfluxDB and one into SQLite."""
    db = f"export_{uuid.uuid4().hex[:6]}"
    influx = Influx1Store(influxdb1.url, db)
    influx.ensure_database()
    sqlite_path = tmp_path_factory.mktemp("export-store") / "spinewatch.sqlite"
    lite = SqliteStore(sqlite_path)
    workers = [_worker(mosquitto, influx), _worker(mosquitto, lite)]
    batches, events = script()
    pub = TestClient(mosquitto.host, mosquitto.port, mqtt5=True)
    pub.connect()
    try:
        cfg = dataclasses.replace(PatientConfig(), timezone="Europe/Berlin", author="t-1", set_ns=T_START - 3600 * NS)
        pub.publish(wire.topic(PATIENT, "d1", "config"), encode_patient_config(cfg))
        for i, b in enumerate(batches):
            pub.publish(wire.topic(PATIENT, b.device, "posture"), wire.encode_posture(b, seq=i + 1))  # seq >= 1
        for e in events:
            pub.publish(wire.topic(PATIENT, e.device, "event"), wire.encode_event(e))
        for w in workers:
            assert w.wait_written(len(batches) + len(events), 60.0), w.stats.snapshot()
            assert sum(w.stats.rejected.values()) == 0, w.stats.snapshot()
    finally:
        pub.close()
        for w in workers:
            w.stop()
    lite.close()
    influx.close()
    yield {"influx_url": influxdb1.url, "db": db, "sqlite": sqlite_path, "batches": batches, "events": events}


@pytest.fixture(params=["influx", "sqlite"])
def source(request, published, monkeypatch):
    """CLI arguments and environment that make `export` read one store."""
    for var in ("SPINEWATCH_INFLUX_URL", "SPINEWATCH_INFLUX_DB", "SPINEWATCH_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    if request.param == "influx":
        monkeypatch.setenv("SPINEWATCH_INFLUX_URL", published["influx_url"])
        monkeypatch.setenv("SPINEWATCH_INFLUX_DB", published["db"])
        return []
    return ["--sqlite", str(published["sqlite"])]


def run(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["export", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


def _num(s: str) -> float | None:
    return None if s == "" else float(s)


def _int(s: str) -> int | None:
    return None if s == "" else int(s)


def iso_ms(t_ns: int) -> str:
    seconds = dt.datetime.fromtimestamp(t_ns // NS, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return seconds + f".{t_ns % NS // 10**6:03d}Z"


# ------------------------------------------------------------------------ round trip


def test_csv_export_equals_what_was_published(source, published, tmp_path, capsys):
    rc, out, err = run(capsys, "--patient", PATIENT, "--from", "2026-03-01", "--to", "2026-03-03", "--tz", "UTC",
                       "--out", str(tmp_path / "pe1"), *source)
    assert rc == 0, err
    header, rows = read_csv(tmp_path / "pe1.posture.csv")
    assert header == list(POSTURE_COLUMNS)
    want = expected_rows(published["batches"])
    no_angle = sum(int(np.sum(np.isnan(b.flexion_deg) & np.isnan(b.lateral_deg))) for b in published["batches"])
    assert no_angle > 0
    assert len(rows) == len(want) == 2 * 4 * 3600 - 30 - no_angle  # d1 starts at 22:00:30
    got = [(int(r["time_utc_ns"]), r["device"], _num(r["flexion_deg"]), _num(r["lateral_deg"]),
            _int(r["state"]), _int(r["activity"])) for r in rows]
    assert got == want
    assert [r["time_utc"] for r in rows[:3]] == [iso_ms(w[0]) for w in want[:3]]
    names = {None: "", 0: "unknown", 1: "lying", 2: "upright_still", 3: "upright_moving"}
    assert all(r["activity_name"] == names[_int(r["activity"])] for r in rows)
    assert f"{len(want):,} posture samples" in out

    header, eps = read_csv(tmp_path / "pe1.episodes.csv")
    assert header == list(EPISODE_COLUMNS)
    assert [(r["device"], int(r["start_utc_ns"]), int(r["end_utc_ns"]), float(r["duration_s"]),
             float(r["peak_deg"]), float(r["mean_deg"]), r["start_utc"]) for r in eps] == [
        (e.device, e.start_ns, e.end_ns, (e.end_ns - e.start_ns) / NS, e.peak_deg, e.mean_deg, iso_ms(e.start_ns))
        for e in published["events"]]


def test_parquet_export_equals_what_was_published(source, published, tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    rc, _, err = run(capsys, "--patient", PATIENT, "--from", "2026-03-01", "--to", "2026-03-03", "--tz", "UTC",
                     "--format", "parquet", "--out", str(tmp_path / "pe1.parquet"), *source)
    assert rc == 0, err
    table = pq.read_table(tmp_path / "pe1.posture.parquet")
    assert table.column_names == list(POSTURE_COLUMNS)
    assert str(table.schema.field("time_utc").type) == "timestamp[ns, tz=UTC]"
    d = table.to_pydict()
    got = list(zip(d["time_utc_ns"], d["device"], d["flexion_deg"], d["lateral_deg"], d["state"], d["activity"],
                   strict=True))
    assert got == expected_rows(published["batches"])
    assert [int(t.timestamp()) * NS for t in d["time_utc"][:2]] == d["time_utc_ns"][:2]
    # one row group per hour window with data: 22, 23, 00, 01 h
    assert pq.ParquetFile(tmp_path / "pe1.posture.parquet").num_row_groups == 4
    eps = pq.read_table(tmp_path / "pe1.episodes.parquet").to_pydict()
    assert list(eps) == list(EPISODE_COLUMNS)
    assert list(zip(eps["device"], eps["start_utc_ns"], eps["end_utc_ns"], eps["peak_deg"], eps["mean_deg"],
                    strict=True)) == [(e.device, e.start_ns, e.end_ns, e.peak_deg, e.mean_deg)
                                      for e in published["events"]]


# ------------------------------------------------------------------------ period boundaries


def _times(path: Path) -> list[int]:
    return [int(r["time_utc_ns"]) for r in read_csv(path)[1]]


def want_times(published, a: int, b: int) -> list[int]:
    return [r[0] for r in expected_rows(published["batches"]) if a <= r[0] < b]


def test_dates_are_midnights_in_the_patients_stored_time_zone(source, published, tmp_path, capsys):
    """The patient's config says Europe/Berlin: 2026-03-02 starts at 23:00Z (CET = UTC+1)."""
    rc, _, err = run(capsys, "--patient", PATIENT, "--from", "2026-03-02", "--to", "2026-03-03",
                     "--out", str(tmp_path / "berlin"), *source)
    assert rc == 0, err
    t = _times(tmp_path / "berlin.posture.csv")
    assert t[0] == BERLIN_MIDNIGHT and t[-1] == T_END - DT
    assert t == want_times(published, BERLIN_MIDNIGHT, T_END)
    eps = read_csv(tmp_path / "berlin.episodes.csv")[1]
    assert [int(r["start_utc_ns"]) for r in eps] == [e.start_ns for e in published["events"][1:]]
    assert "Europe/Berlin" in err


def test_tz_overrides_the_patients_zone_and_the_end_is_excluded(source, published, tmp_path, capsys):
    rc, _, err = run(capsys, "--patient", PATIENT, "--from", "2026-03-01T23:30", "--to", "2026-03-02T00:00",
                     "--tz", "UTC", "--out", str(tmp_path / "half"), *source)
    assert rc == 0, err
    t = _times(tmp_path / "half.posture.csv")
    assert t[0] == utc_ns("2026-03-01T23:30:00") and t[-1] == utc_ns("2026-03-01T23:59:59")
    # both devices, [23:30, 00:00): the samples at 00:00:00 are not in it
    assert t == want_times(published, utc_ns("2026-03-01T23:30:00"), utc_ns("2026-03-02T00:00:00"))


def test_times_with_an_offset_keep_it(source, published, tmp_path, capsys):
    rc, _, err = run(capsys, "--patient", PATIENT, "--from", "2026-03-02T01:00:00+01:00",
                     "--to", "2026-03-02T00:10:00Z", "--out", str(tmp_path / "off"), *source)
    assert rc == 0, err
    t = _times(tmp_path / "off.posture.csv")
    assert (t[0], t[-1]) == (utc_ns("2026-03-02T00:00:00"), utc_ns("2026-03-02T00:09:59"))
    assert t == want_times(published, utc_ns("2026-03-02T00:00:00"), utc_ns("2026-03-02T00:10:00"))


# ------------------------------------------------------------------------ streaming


@pytest.mark.parametrize("store_kind", ["influx", "sqlite"])
def test_chunks_hold_exactly_their_window(published, store_kind, monkeypatch):
    """Ten-minute windows over messages that straddle them (d1's start on :30 s), and InfluxDB
    answers in pieces of 500 rows: every sample lands once, in its own window, in time order."""
    monkeypatch.setattr(influx, "INFLUX_CHUNK_ROWS", 500)
    store = (Influx1Store(published["influx_url"], published["db"]) if store_kind == "influx"
             else SqliteStore(published["sqlite"]))
    a, b = utc_ns("2026-03-01T23:05:00"), utc_ns("2026-03-02T00:05:00")
    window = 600 * NS
    chunks = list(store.posture_chunks(PATIENT, a, b, window))
    store.close()
    assert [c.end_ns for c in chunks] == [a + k * window for k in range(1, 7)]
    for c in chunks:
        assert len(c) > 0
        assert c.t_ns.min() >= c.end_ns - window and c.t_ns.max() < c.end_ns
        assert np.all(np.diff(c.t_ns) >= 0)
    t = np.concatenate([c.t_ns for c in chunks])
    dev = np.concatenate([c.device for c in chunks])
    want = [(r[0], r[1]) for r in expected_rows(published["batches"]) if a <= r[0] < b]
    assert list(zip(t.tolist(), dev.tolist(), strict=True)) == want


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(("args", "key"), [
    (["--patient", "nobody", "--from", "2026-03-01", "--to", "2026-03-03"], "nobody"),
    (["--patient", PATIENT, "--from", "2026-04-01", "--to", "2026-04-02"], "no posture data"),
    (["--patient", PATIENT, "--from", "2026-03-03", "--to", "2026-03-01"], "--from"),
    (["--patient", PATIENT, "--from", "2026-03-02T10:00", "--to", "2026-03-02T10:00"], "--from"),
    (["--patient", PATIENT, "--from", "01/03/2026", "--to", "2026-03-03"], "--from"),
    (["--patient", PATIENT, "--from", "2026-03-01", "--to", "2026-02-30"], "--to"),
    (["--patient", PATIENT, "--from", "2026-03-01", "--to", "2026-03-03", "--format", "xlsx"], "--format"),
    (["--patient", PATIENT, "--from", "2026-03-01", "--to", "2026-03-03", "--tz", "Mars/Olympus"], "--tz"),
    (["--patient", "p 1", "--from", "2026-03-01", "--to", "2026-03-03"], "--patient"),
])
def test_bad_input_is_one_line_a_non_zero_exit_and_nothing_written(source, tmp_path, capsys, args, key):
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    rc, out, err = run(capsys, *args, "--out", str(out_dir / "sub" / "x"), *source)
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], err
    assert out == ""
    assert list(out_dir.iterdir()) == []  # not even the sub folder, nor a .part file


def test_a_missing_sqlite_file_is_named_and_not_created(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPINEWATCH_INFLUX_URL", raising=False)
    missing = tmp_path / "nope.sqlite"
    rc, _, err = run(capsys, "--patient", PATIENT, "--from", "2026-03-01", "--to", "2026-03-03",
                     "--sqlite", str(missing), "--out", str(tmp_path / "x"))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--sqlite" in err and "nope.sqlite" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_interrupted_export_leaves_no_half_file(published, tmp_path):
    store = SqliteStore(published["sqlite"])
    paths = export_paths(tmp_path / "out" / "cut", "csv")

    def interrupt(frac: float, rows: int) -> None:
        assert rows > 0
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export(store, PATIENT, T_START, T_END, paths, "csv", on_progress=interrupt)
    store.close()
    assert not (tmp_path / "out").exists()


def test_parquet_without_pyarrow_names_the_pip_command(source, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    rc, _, err = run(capsys, "--patient", PATIENT, "--from", "2026-03-01", "--to", "2026-03-03",
                     "--format", "parquet", "--out", str(tmp_path / "x"), *source)
    assert rc == 1
    assert err.strip().splitlines() == ["spinewatch: --format parquet needs pyarrow: pip install 'spinewatch[parquet]'"]
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ progress


class _Tty:
    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_progress_appears_only_after_a_second(monkeypatch):
    clock = [100.0]  # simulated perf_counter, s
    monkeypatch.setattr("spinewatch.service.cli.export.time.perf_counter", lambda: clock[0])
    tty = _Tty()
    p = Progress("export pe-1", tty)
    clock[0] += 0.5
    p(0.3, 1000)
    assert tty.text == ""
    clock[0] += 1.0
    p(0.5, 3_000_000)
    assert "50.0 %" in tty.text and "3,000,000 rows" in tty.text and "ETA 0:01" in tty.text
    p.done()
    assert tty.text.endswith("\n")


def test_activity_names_are_the_signal_packages_names():
    from spinewatch.service.reports.export import ACTIVITY_NAMES
    from spinewatch.signal.activity import Activity

    assert ACTIVITY_NAMES == {int(a): a.name.lower() for a in Activity}


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--help"])
    assert exit_.value.code == 0
    assert "example: spinewatch export --patient" in capsys.readouterr().out


def test_a_terminated_export_leaves_no_half_file(tmp_path):
    """SIGTERM (systemd stop, kill) mid-export: the .part files are removed, as on Ctrl-C."""
    from _waiting import wait_until

    from spinewatch.service.transport.wire import PostureMsg

    store = SqliteStore(tmp_path / "big.sqlite")
    n = 100
    flex = np.round(np.linspace(0, 30, n), 2)
    for hour in range(6):  # 6 h at 100 Hz: 2.16 M samples, several seconds to export
        base = T_START + hour * 3600 * NS
        store.write([PostureMsg(PATIENT, "d1", base + k * NS, NS // 100, flex, flex, np.zeros(n, np.int8),
                                np.full(n, 2, np.int8)) for k in range(3600)])
    store.close()
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spinewatch", "export", "--patient", PATIENT, "--from", "2026-03-01",
         "--to", "2026-03-03", "--sqlite", str(tmp_path / "big.sqlite"), "--out", str(out / "big")],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (out / "big.posture.csv.part").exists() and (out / "big.posture.csv.part").stat().st_size
                   or proc.poll() is not None, what="the export to start writing")
        assert proc.poll() is None, "the export finished before it could be terminated"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "spinewatch: interrupted"
    assert not out.exists()


def test_one_day_is_the_same_period_in_export_and_report(source, published, tmp_path, capsys):
    """`--from D --to D` is local day D in both commands (one rule: spinewatch/service/reports/periods.py)."""
    rc, _, err = run(capsys, "--patient", PATIENT, "--from", "2026-03-02", "--to", "2026-03-02",
                     "--out", str(tmp_path / "day"), *source)
    assert rc == 0, err
    t = _times(tmp_path / "day.posture.csv")
    assert t == want_times(published, BERLIN_MIDNIGHT, BERLIN_MIDNIGHT + 86_400 * NS) and t[-1] == T_END - DT
    capsys.readouterr()
    rc = main(["report", "--patient", PATIENT, "--from", "2026-03-02", "--to", "2026-03-02", "--format", "json",
               *source])
    out = capsys.readouterr()
    assert rc == 0, out.err
    days = json.loads(out.out)["days"]
    assert [(d["date"], d["has_data"]) for d in days] == [("2026-03-02", True)]
