"""InfluxDB line protocol for posture and slouch points, built per array, not per Point object."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from spinewatch.service.wire import EventMsg, PostureMsg


def _fmt(x: float) -> str:
    return repr(round(x, 2))


def posture_lines(m: PostureMsg) -> list[str]:
    """One line per sample: measurement ``posture``, tags patient/device, time ``t0 + i*dt``.

    Fields: ``flexion_deg``, ``lateral_deg`` (float), ``state``, ``activity`` (integer) when
    present. Samples whose angles are both NaN (sensor sent null) are skipped: InfluxDB has
    no NaN.
    """
    prefix = f"posture,device={m.device},patient={m.patient} "
    n = len(m)
    ts = (m.t0_ns + m.dt_ns * np.arange(n, dtype=np.int64)).tolist()
    flex = m.flexion_deg.tolist()
    lat = m.lateral_deg.tolist()
    st = m.state.tolist() if m.state is not None else None
    ac = m.activity.tolist() if m.activity is not None else None
    out: list[str] = []
    append = out.append
    for i in range(n):
        f, la = flex[i], lat[i]
        fields = []
        if not math.isnan(f):
            fields.append(f"flexion_deg={f!r}")
        if not math.isnan(la):
            fields.append(f"lateral_deg={la!r}")
        if not fields:
            continue
        if st is not None:
            fields.append(f"state={st[i]}i")
        if ac is not None:
            fields.append(f"activity={ac[i]}i")
        append(prefix + ",".join(fields) + f" {ts[i]}")
    return out


def slouch_line(e: EventMsg) -> str:
    """Measurement ``slouch`` at ``start_ns``: duration_s, peak_deg, mean_deg (when given)."""
    fields = [f"duration_s={_fmt((e.end_ns - e.start_ns) / 1e9)}", f"peak_deg={_fmt(e.peak_deg)}"]
    if e.mean_deg is not None:
        fields.append(f"mean_deg={_fmt(e.mean_deg)}")
    fields.append(f"end_ns={e.end_ns}i")
    return f"slouch,device={e.device},patient={e.patient} {','.join(fields)} {e.start_ns}"


def to_lines(msgs: Iterable[PostureMsg | EventMsg]) -> list[str]:
    out: list[str] = []
    for m in msgs:
        if isinstance(m, PostureMsg):
            out.extend(posture_lines(m))
        else:
            out.append(slouch_line(m))
    return out
