"""InfluxDB schema set-up (``spinewatch influx init``): database, retention, downsampling.

InfluxDB 1.x layout (docs/storage.md):

| retention policy | duration | holds |
|---|---|---|
| ``raw`` (default) | ``raw_retention`` (90 days) | ``posture`` (100 Hz samples), ``slouch`` |
| ``trend`` | forever | ``posture_1m`` (per-minute means, counts, wear and upright-still seconds), ``slouch`` |
| ``settings`` | forever | ``patient_config``, ``calibration`` (written by ingest next to the ones in ``raw``) |

Continuous queries fill ``trend`` as data arrives; ``--backfill`` runs the same statements
over data written before they existed, and recomputes every minute's wear seconds (raw points
stored before ``wear_s`` existed are credited ``LEGACY_SAMPLE_S`` each: docs/storage.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from spinewatch.service.storage.base import LEGACY_SAMPLE_S, SETTINGS_MEASUREMENTS, SETTINGS_RP, WEAR_FIELD

_DURATION_RE: Final = re.compile(r"^(INF|\d+[hdw])$")

_UNIT_S: Final = {"h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_retention_s(duration: str) -> int:
    """Seconds in an InfluxQL retention duration (``90d``, ``12w``, ``2160h``); ``INF`` is 0 (forever).

    Raises:
        ValueError: anything else.
    """
    if not _DURATION_RE.match(duration):
        raise ValueError(f"raw_retention must look like 90d, 12w, 2160h or INF, got {duration!r}")
    if duration == "INF":
        return 0
    return int(duration[:-1]) * _UNIT_S[duration[-1]]


# Seconds of wear of a group of raw points: their own periods (``wear_s``), plus LEGACY_SAMPLE_S
# for each point stored without one. InfluxQL has no COALESCE: when no point of the group has
# ``wear_s`` the sum is null and so is the whole expression (the point then gets no such field);
# WEAR_S_LEGACY covers those groups, and --backfill runs it before the exact statements.
WEAR_S_EXACT: Final = (f'sum("{WEAR_FIELD}") + (count("flexion_deg") - count("{WEAR_FIELD}")) * {LEGACY_SAMPLE_S!r}')
WEAR_S_LEGACY: Final = f'count("flexion_deg") * {LEGACY_SAMPLE_S!r}'

# Per-minute aggregates of the raw series: what trend dashboards and long reports read.
_POSTURE_1M: Final = (
    'SELECT mean("flexion_deg") AS "flexion_deg", mean("lateral_deg") AS "lateral_deg", '
    'count("flexion_deg") AS "samples", mean("state") AS "slouch_fraction", {wear} AS "wear_s" '
    'INTO "{{db}}"."trend"."posture_1m" FROM "{{db}}"."raw"."posture" {{where}}GROUP BY time(1m), *'
)
POSTURE_1M_SELECT: Final = _POSTURE_1M.format(wear=WEAR_S_EXACT)
POSTURE_1M_LEGACY_SELECT: Final = _POSTURE_1M.format(wear=WEAR_S_LEGACY)
# Upright-still samples and seconds per minute (activity 2), into the same points of posture_1m
# (InfluxDB merges the fields of points with the same series and time): prolonged sitting over
# weeks. A separate query because InfluxQL 1.x has no conditional aggregate.
_POSTURE_1M_STILL: Final = (
    'SELECT count("activity") AS "still_samples", {wear} AS "still_s" '
    'INTO "{{db}}"."trend"."posture_1m" FROM "{{db}}"."raw"."posture" WHERE "activity" = 2 {{where}}'
    'GROUP BY time(1m), *'
)
POSTURE_1M_STILL_SELECT: Final = _POSTURE_1M_STILL.format(wear=WEAR_S_EXACT)
POSTURE_1M_STILL_LEGACY_SELECT: Final = _POSTURE_1M_STILL.format(wear=WEAR_S_LEGACY)
# Episodes are kept forever too; 1-s buckets never merge two (they are seconds apart).
SLOUCH_COPY_SELECT: Final = (
    'SELECT max("duration_s") AS "duration_s", max("peak_deg") AS "peak_deg", '
    'max("mean_deg") AS "mean_deg", max("end_ns") AS "end_ns" '
    'INTO "{db}"."trend"."slouch" FROM "{db}"."raw"."slouch" {where}GROUP BY time(1s), *'
)

# Settings stored before RP settings existed (written by ingest since): copied as they are.
SETTINGS_COPY_SELECT: Final = (
    'SELECT * INTO "{db}"."' + SETTINGS_RP + '"."{m}" FROM "{db}"."raw"."{m}" WHERE time > 0 GROUP BY *'
)


@dataclass(frozen=True, slots=True)
class Influx1Schema:
    """Schema of one InfluxDB 1.x database.

    Attributes:
        db: database name.
        raw_retention: how long 100 Hz samples are kept: ``90d``, ``12w``, ``INF``.
    """

    db: str
    raw_retention: str = "90d"

    def __post_init__(self) -> None:
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", self.db):
            raise ValueError(f"db must be 1-64 characters of A-Z a-z 0-9 _ . -, got {self.db!r}")
        parse_retention_s(self.raw_retention)

    def statements(self, existing_policies: frozenset[str] = frozenset()) -> list[str]:
        """InfluxQL to create the layout, or update it (``existing_policies`` already there)."""
        db = self.db
        verb = "ALTER" if "raw" in existing_policies else "CREATE"
        stmts = [
            f'CREATE DATABASE "{db}"',
            f'{verb} RETENTION POLICY "raw" ON "{db}" DURATION {self.raw_retention} REPLICATION 1 DEFAULT',
        ]
        stmts += [f'CREATE RETENTION POLICY "{rp}" ON "{db}" DURATION INF REPLICATION 1'
                  for rp in ("trend", SETTINGS_RP) if rp not in existing_policies]
        return stmts + [
            f'DROP CONTINUOUS QUERY "posture_1m" ON "{db}"',
            f'CREATE CONTINUOUS QUERY "posture_1m" ON "{db}" RESAMPLE FOR 2m BEGIN '
            + POSTURE_1M_SELECT.format(db=db, where="") + " END",
            f'DROP CONTINUOUS QUERY "posture_1m_still" ON "{db}"',
            f'CREATE CONTINUOUS QUERY "posture_1m_still" ON "{db}" RESAMPLE FOR 2m BEGIN '
            + POSTURE_1M_STILL_SELECT.format(db=db, where="") + " END",
            f'DROP CONTINUOUS QUERY "slouch_copy" ON "{db}"',
            f'CREATE CONTINUOUS QUERY "slouch_copy" ON "{db}" RESAMPLE EVERY 1m FOR 1h BEGIN '
            + SLOUCH_COPY_SELECT.format(db=db, where="") + " END",
        ]

    def backfill_statements(self) -> list[str]:
        """Fill ``trend`` and ``settings`` from all raw data already stored (run once after ``init``,
        and once after upgrading to wear seconds from the samples' own periods).

        Every minute is first written with the legacy wear (LEGACY_SAMPLE_S per point), then
        overwritten by the exact one wherever a point of the minute carries ``wear_s``: minutes
        of old points keep the old 100 Hz assumption, every other minute its own periods.
        """
        where = "WHERE time > 0 "
        return [POSTURE_1M_LEGACY_SELECT.format(db=self.db, where=where),
                POSTURE_1M_STILL_LEGACY_SELECT.format(db=self.db, where="AND time > 0 "),
                POSTURE_1M_SELECT.format(db=self.db, where=where),
                POSTURE_1M_STILL_SELECT.format(db=self.db, where="AND time > 0 "),
                SLOUCH_COPY_SELECT.format(db=self.db, where=where),
                *(SETTINGS_COPY_SELECT.format(db=self.db, m=m) for m in SETTINGS_MEASUREMENTS)]
