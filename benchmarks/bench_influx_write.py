"""Benchmark: InfluxDB's own CPU per point for line-protocol and server-setting variants.

Posts the bench_ingest workload (6,000 one-second posture messages of 20 patients, 600,000
lines from the worker's line-protocol kernel) straight to a private InfluxDB 1.x /write
(tests/servers.py config), no MQTT, and reads influxd's CPU seconds from /proc. Variants:

- base: as the worker writes (ns timestamps, 0.01 degree angles, 50,000 lines per request);
- ms, us: ``precision=ms`` / ``us`` with correspondingly shorter timestamps;
- digits1: angles with 0.1 degree instead of 0.01;
- gzip: gzip-compressed request bodies (level 1; the client's compression CPU is printed);
- b10k: 10,000 lines per request;
- conc2: two requests in flight at once (25,000 lines each).

``--settings`` adds or replaces keys of the server config, e.g.
``'{"monitor.store-enabled": "true", "data.index-version": "\\"tsi1\\""}'``.

    python benchmarks/bench_influx_write.py [--variants base,ms,...] [--repeat 3] [--settings JSON]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import re
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

VARIANTS = {  # name: (line-protocol options, lines per request, requests in flight)
    "base": ({}, 50_000, 1), "ms": ({"precision": "ms"}, 50_000, 1), "us": ({"precision": "us"}, 50_000, 1),
    "digits1": ({"digits": 1}, 50_000, 1), "gzip": ({"gzip": True}, 50_000, 1),
    "b10k": ({}, 10_000, 1), "conc2": ({}, 25_000, 2),
}


def _lines() -> list[bytes]:
    from bench_ingest import _payloads

    from spinewatch.service.storage.lineprotocol import posture_bytes
    from spinewatch.service.transport import wire

    out: list[bytes] = []
    for topic, payload in _payloads(6000, 20):
        patient, device, _ = wire.parse_topic(topic)
        body, _ = posture_bytes(wire.decode_posture(patient, device, payload))
        out.extend(body.split(b"\n")[:-1])
    return out


def _bodies(lines: list[bytes], opts: dict[str, object], per_request: int) -> list[bytes]:
    if opts.get("precision") == "ms":
        lines = [ln[:-6] for ln in lines]  # the kernel's ns times end in 000000 here (10 ms samples)
    elif opts.get("precision") == "us":
        lines = [ln[:-3] for ln in lines]
    if opts.get("digits") == 1:
        lines = [re.sub(rb"(\.\d)\d", rb"\1", ln) for ln in lines]
    return [b"\n".join(lines[i:i + per_request]) + b"\n" for i in range(0, len(lines), per_request)]


def run(srv, name: str, lines: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    from bench_ingest import _cpu_s

    opts, per_request, in_flight = VARIANTS[name]
    bodies = _bodies(lines, opts, per_request)
    gzip_s = 0.0
    if opts.get("gzip"):
        t = time.process_time()
        bodies = [gzip.compress(b, 1) for b in bodies]
        gzip_s = time.process_time() - t
    db = f"w_{name}_{time.monotonic_ns()}"
    srv.query(f'CREATE DATABASE "{db}"')
    path = f"/write?db={db}&precision={opts.get('precision', 'ns')}"
    headers = {"Content-Encoding": "gzip"} if opts.get("gzip") else {}

    def post(chunk: list[bytes]) -> None:
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
        for b in chunk:
            c.request("POST", path, body=b, headers=headers)
            r = c.getresponse()
            r.read()
            if r.status != 204:
                raise RuntimeError(f"/write answered HTTP {r.status}")
        c.close()

    cpu0, t0 = _cpu_s(srv.pid), time.perf_counter()
    threads = [threading.Thread(target=post, args=(bodies[k::in_flight],)) for k in range(in_flight)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt, cpu = time.perf_counter() - t0, _cpu_s(srv.pid) - cpu0
    n = len(lines)
    print(f"{name:<8} {n / dt:>9,.0f} points/s  influxd {cpu * 1e6 / n:5.2f} us CPU/point"
          + (f"  (client gzip {gzip_s * 1e6 / n:.2f} us/point)" if gzip_s else ""), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    ap.add_argument("--repeat", type=int, default=3, help="rounds over all variants (interleaved)")
    ap.add_argument("--settings", default="{}", help='JSON {"section.key": "toml value"} for the server config')
    args = ap.parse_args()
    names = args.variants.split(",")
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s): {', '.join(unknown)}")
    settings: dict[str, str] = json.loads(args.settings)
    from servers import InfluxDB1Server

    class Server(InfluxDB1Server):
        def _prepare(self) -> list[str]:
            cmd = super()._prepare()
            conf = self.config_file.read_text()
            for k, v in settings.items():
                section, key = k.rsplit(".", 1)
                a = conf.index(f"[{section}]\n") + len(section) + 3
                b = conf.find("\n[", a)
                b = len(conf) if b < 0 else b + 1
                block, hits = re.subn(rf"(?m)^(\s*){re.escape(key)} = .*$", lambda m, kv=f"{key} = {v}": m[1] + kv,
                                      conf[a:b])
                conf = conf[:a] + (block if hits else f"  {key} = {v}\n" + block) + conf[b:]
            self.config_file.write_text(conf)
            return cmd

    lines = _lines()
    with Server() as srv:
        print(f"InfluxDB 1.x, {len(lines):,} points per run, server settings {settings or 'of tests/servers.py'}")
        for _ in range(args.repeat):
            for name in names:
                run(srv, name, lines)
    print(f"reproduce: python benchmarks/bench_influx_write.py --variants {args.variants} --repeat {args.repeat}"
          + (f" --settings '{args.settings}'" if settings else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
