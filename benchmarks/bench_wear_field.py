"""Benchmark: what the ``wear_s`` field (each posture point's own sample period) costs InfluxDB.

Posts the bench_ingest workload (6,000 one-second posture messages of 20 patients at 100 Hz,
600,000 points from the worker's line-protocol kernel) to a private InfluxDB 1.x twice, into
two databases: as written today (``wear_s`` beside every ``flexion_deg``) and with that field
stripped (as written before it existed). Prints request bytes, influxd CPU per point, and the
on-disk size of each database's TSM files after InfluxDB has snapshotted its cache and fully
compacted the shard (cold durations set to 1 s, so the files are what a day-old shard holds).

    python benchmarks/bench_wear_field.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import http.client
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

COLD = {"cache-snapshot-write-cold-duration": '"1s"', "compact-full-write-cold-duration": '"1s"'}


def _tsm_bytes(data_dir: Path, db: str) -> tuple[int, int]:
    """(bytes of .tsm files, number of them) of database ``db``."""
    files = list((data_dir / db).rglob("*.tsm"))
    return sum(f.stat().st_size for f in files), len(files)


def _wal_bytes(wal_dir: Path, db: str) -> int:
    return sum(f.stat().st_size for f in (wal_dir / db).rglob("*.wal"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=2, help="rounds (each writes both variants into new databases)")
    args = ap.parse_args()
    from bench_influx_write import _lines
    from bench_ingest import _cpu_s
    from servers import InfluxDB1Server

    class Server(InfluxDB1Server):
        def _prepare(self) -> list[str]:
            cmd = super()._prepare()
            conf = self.config_file.read_text()
            extra = "".join(f"  {k} = {v}\n" for k, v in COLD.items())
            conf = conf.replace("[data]\n", "[data]\n" + extra, 1)
            self.config_file.write_text(conf)
            return cmd

    with_field = _lines()
    assert all(b",wear_s=" in ln for ln in with_field[:100]), "the kernel writes wear_s"
    without = [re.sub(rb",wear_s=[0-9.e-]+", b"", ln) for ln in with_field]
    variants = {"with wear_s": with_field, "without": without}
    print(f"InfluxDB 1.x, {len(with_field):,} posture points per variant (100 Hz, 20 patients), "
          f"TSM cache and full-compaction cold durations 1 s")
    with Server() as srv:
        for rnd in range(args.repeat):
            dbs = {}
            for name, lines in variants.items():
                db = f"wear_{rnd}_{'w' if name.startswith('with ') else 'n'}"
                srv.query(f'CREATE DATABASE "{db}"')
                bodies = [b"\n".join(lines[i:i + 50_000]) + b"\n" for i in range(0, len(lines), 50_000)]
                c = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
                cpu0, t0 = _cpu_s(srv.pid), time.perf_counter()
                for body in bodies:
                    c.request("POST", f"/write?db={db}&precision=ns", body=body)
                    r = c.getresponse()
                    r.read()
                    if r.status != 204:
                        raise RuntimeError(f"/write answered HTTP {r.status}")
                cpu, wall = _cpu_s(srv.pid) - cpu0, time.perf_counter() - t0
                c.close()
                dbs[name] = db
                print(f"round {rnd + 1} {name:<12} request {sum(map(len, bodies)) / len(lines):5.1f} B/point  "
                      f"influxd {cpu * 1e6 / len(lines):4.2f} us CPU/point  {len(lines) / wall:,.0f} points/s",
                      flush=True)
            # wait (deadline) until the WAL is snapshotted into TSM and the shard fully compacted to one file
            deadline = time.monotonic() + 300
            while True:
                sizes = {n: (_tsm_bytes(srv.data_dir, db), _wal_bytes(srv.wal_dir, db)) for n, db in dbs.items()}
                if all(wal == 0 and count == 1 for (_, count), wal in sizes.values()):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"shards not compacted after 300 s: {sizes}")
                time.sleep(1.0)  # sync-ok: polling the server's files with a deadline
            (b_with, _), _ = sizes["with wear_s"]
            (b_without, _), _ = sizes["without"]
            print(f"round {rnd + 1} TSM on disk: with wear_s {b_with:,} B ({b_with / len(with_field):.2f} B/point), "
                  f"without {b_without:,} B ({b_without / len(without):.2f} B/point): "
                  f"+{b_with - b_without:,} B (+{100 * (b_with - b_without) / b_without:.1f} %)", flush=True)
    print(f"reproduce: python benchmarks/bench_wear_field.py --repeat {args.repeat}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
