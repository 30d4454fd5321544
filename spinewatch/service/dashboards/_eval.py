"""Evaluate a panel's targets the way Grafana does: InfluxQL results into frames, then expressions.

Used by the tests and by the PNG renderer, so both see what Grafana would draw. Covers the subset
of Grafana's server-side expressions the dashboards use: ``math`` (+ - * / and comparisons, which give
1 or 0, over targets, series joined on equal timestamps, numbers broadcast; functions ``abs`` and
``log``) and ``reduce`` (last, mean, sum, min, max, count).
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Frame:
    """One field of a query result: a series (``t_ns`` set) or a number (``t_ns`` None)."""

    name: str
    v: npt.NDArray[np.float64]
    t_ns: npt.NDArray[np.int64] | None = None
    labels: dict[str, str] = field(default_factory=dict)


def frames_of(series: list[dict[str, Any]]) -> list[Frame]:
    """InfluxQL ``series`` (epoch ns) -> one frame per series and value column."""
    out = []
    for s in series:
        t = np.array([row[0] for row in s["values"]], dtype=np.int64)
        for j, col in enumerate(s["columns"][1:], start=1):
            v = np.array([np.nan if row[j] is None else row[j] for row in s["values"]], dtype=np.float64)
            out.append(Frame(col, v, t, dict(s.get("tags") or {})))
    return out


_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}
_CMP: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
_FUNCS: dict[str, Callable[[Any], Any]] = {"abs": np.abs, "log": np.log}
_REDUCERS: dict[str, Callable[[Any], float]] = {
    "last": lambda v: float(v[-1]), "mean": np.nanmean, "sum": np.nansum, "min": np.nanmin, "max": np.nanmax,
    "count": lambda v: float(np.size(v)),
}


def _binary(op: Callable[[Any, Any], Any], a: Frame, b: Frame) -> Frame:
    with np.errstate(divide="ignore", invalid="ignore"):
        if a.t_ns is None or b.t_ns is None:
            t = a.t_ns if a.t_ns is not None else b.t_ns
            return Frame(a.name if a.t_ns is not None else b.name, np.asarray(op(a.v, b.v), dtype=np.float64), t,
                         a.labels or b.labels)
        t, ia, ib = np.intersect1d(a.t_ns, b.t_ns, return_indices=True)
        return Frame(a.name, np.asarray(op(a.v[ia], b.v[ib]), dtype=np.float64), t, a.labels or b.labels)


def _math(expression: str, results: dict[str, list[Frame]]) -> list[Frame]:
    tree = ast.parse(re.sub(r"\$(\w+)", r"ref_\1", expression), mode="eval")

    def ev(node: ast.AST) -> Frame | None:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return Frame("", np.array(float(node.value)))
        if isinstance(node, ast.Name) and node.id.startswith("ref_"):
            frames = results.get(node.id[4:], [])
            if len(frames) > 1:
                raise ValueError(f"{expression}: ${node.id[4:]} has {len(frames)} series; one expected")
            return frames[0] if frames else None
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            a, b = ev(node.left), ev(node.right)
            return None if a is None or b is None else _binary(_OPS[type(node.op)], a, b)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP:
            a, b = ev(node.left), ev(node.comparators[0])
            cmp = _CMP[type(node.ops[0])]
            return None if a is None or b is None else _binary(lambda x, y: cmp(x, y).astype(np.float64), a, b)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
                and len(node.args) == 1):
            a = ev(node.args[0])
            with np.errstate(divide="ignore", invalid="ignore"):
                return None if a is None else Frame(a.name, np.asarray(_FUNCS[node.func.id](a.v), np.float64),
                                                    a.t_ns, a.labels)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            a = ev(node.operand)
            return None if a is None else Frame(a.name, -a.v, a.t_ns, a.labels)
        raise ValueError(f"unsupported expression {expression!r}")

    out = ev(tree)
    return [] if out is None or out.v.size == 0 else [out]


def evaluate(panel: dict[str, Any], run: Callable[[str], list[dict[str, Any]]]) -> dict[str, list[Frame]]:
    """Every target of ``panel`` by refId; ``run`` executes one (already expanded) InfluxQL query."""
    results: dict[str, list[Frame]] = {}
    for t in panel.get("targets", []):
        kind = t["datasource"]["type"]
        if kind == "influxdb":
            results[t["refId"]] = frames_of(run(t["query"]))
        elif t["type"] == "math":
            results[t["refId"]] = _math(t["expression"], results)
        elif t["type"] == "reduce":
            src = results.get(t["expression"], [])
            results[t["refId"]] = [Frame(f.name, np.array(_REDUCERS[t["reducer"]](f.v)), None, f.labels)
                                   for f in src if f.v.size]
        else:
            raise ValueError(f"target type {kind}/{t.get('type')} not supported")
    return results


def visible(panel: dict[str, Any], results: dict[str, list[Frame]]) -> dict[str, list[Frame]]:
    """The results Grafana draws: targets without ``hide``."""
    return {t["refId"]: results[t["refId"]] for t in panel.get("targets", []) if not t.get("hide")}
