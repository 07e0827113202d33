"""Flatten cell records into tidy pandas tables (one row per cell, one row per evaluation).

Everything the report draws or prints is computed from these tables, so the figures, the HTML
and `results.csv` all agree on what a cell's task, variant, seed and status are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import pandas as pd

from ..results import CellRecord, cell_identity
from .stats import largest_drop

#: Columns of the cells table (fractions: the report formats them; `results.csv` is `plasticity.frames`).
BASE_COLUMNS = [
    "task", "rule", "optimizer", "variant", "seed", "status", "updates", "examples",
    "train_seconds", "val_accuracy", "test_accuracy", "best_val_accuracy", "largest_drop",
    "wall_seconds",
]


def thr_key(threshold: float | str) -> str:
    """Canonical text of a threshold (0.9 -> "0.9"), used in column names and lookups."""
    return f"{float(threshold):g}"


def thr_label(threshold: float | str) -> str:
    """A threshold as the reader sees it: 0.975 -> "97.5 %"."""
    return f"{float(threshold) * 100:g} %"


def as_number(value: Any) -> float:
    """A JSON number or null as a float (null, bools and junk become NaN)."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _by_threshold(mapping: Any) -> dict[str, float]:
    """A final line's `updates_to`-style dict keyed by canonical threshold text."""
    if not isinstance(mapping, dict):
        return {}
    out = {}
    for key, value in mapping.items():
        try:
            out[thr_key(key)] = as_number(value)
        except ValueError:
            continue
    return out


def cell_thresholds(cell: CellRecord) -> list[float]:
    """The cell's validation thresholds (fractions), from its header or else its final line."""
    thresholds = cell.header.get("thresholds") or []
    if not thresholds and cell.final:
        thresholds = list((cell.final.get("updates_to") or {}).keys())
    return sorted({float(t) for t in thresholds})


def cell_row(cell: CellRecord) -> dict[str, Any]:
    """One row of the cells table: identity, final numbers, thresholds, grid values."""
    config = cell.config
    labels = cell.header.get("labels") or {}
    rule = (config.get("rule") or {}).get("name") or labels.get("rule") or "?"
    optimizer = (config.get("optimizer") or {}).get("name") or labels.get("optimizer") or "?"
    task, variant, seed = cell_identity(cell)
    # An interrupted cell has no final line: its progress comes from the last evaluation.
    last = cell.final or (cell.evals[-1] if cell.evals else {})
    curve = [as_number(e.get("val_accuracy")) for e in cell.evals]
    finite = [v for v in curve if math.isfinite(v)]
    row: dict[str, Any] = {
        "task": task,
        "rule": str(rule),
        "optimizer": str(optimizer),
        "variant": variant,
        "seed": seed,
        "status": cell.status,
        "updates": as_number(last.get("updates")),
        "examples": as_number(last.get("examples")),
        "train_seconds": as_number(last.get("train_seconds")),
        "val_accuracy": as_number(last.get("val_accuracy")),
        "test_accuracy": as_number(last.get("test_accuracy")),
        "best_val_accuracy": max(finite) if finite else math.nan,
        "largest_drop": largest_drop(curve) if finite else math.nan,
        "wall_seconds": as_number((cell.final or {}).get("wall_seconds")),
        "message": str((cell.final or {}).get("message") or ""),
        "cell_id": str(cell.header.get("cell_id", "")),
        "file": cell.path.name,
        "thresholds": cell_thresholds(cell),
        "grid": dict(labels.get("grid") or {}),
        **_load_fields(cell),
    }
    final = cell.final or {}
    for kind in ("updates_to", "examples_to", "seconds_to"):
        reached = _by_threshold(final.get(kind))
        for t in row["thresholds"]:
            row[f"{kind}_{thr_key(t)}"] = reached.get(thr_key(t), math.nan)
    for key, value in row["grid"].items():
        row[str(key)] = value
    return row


def _load_fields(cell: CellRecord) -> dict[str, float]:
    """The machine's 1-minute load average at the cell's start and end, and its usable CPUs
    (NaN when the cell did not record them: older runs, or an OS without load averages)."""
    def load1(entry: Any) -> float:
        values = entry.get("load_avg") if isinstance(entry, dict) else None
        return as_number(values[0]) if isinstance(values, list) and values else math.nan

    start = cell.header.get("load_start")
    end = (cell.final or {}).get("load_end")
    cpus = next((as_number(e.get("cpus")) for e in (start, end) if isinstance(e, dict) and e.get("cpus")), math.nan)
    return {"load_start": load1(start), "load_end": load1(end), "cpus": cpus}


def busy(frame: pd.DataFrame) -> pd.Series:
    """Cells whose training seconds were measured on a busy machine: the 1-minute load average at
    the cell's start or end exceeded the number of CPUs it could use."""
    if frame.empty or "cpus" not in frame:
        return pd.Series(False, index=frame.index)
    peak = frame[["load_start", "load_end"]].max(axis=1)
    return (peak > frame["cpus"]).fillna(False).astype(bool)


def cells_frame(cells: Iterable[CellRecord]) -> pd.DataFrame:
    """One row per cell of any status; `thresholds` and `grid` hold the cell's lists/dicts.

    The cells are those that count (`results.select_cells`): a (task, variant, seed) that
    appears twice would be averaged in twice, so it is refused here, whoever passes the cells.
    """
    rows = [cell_row(c) for c in cells]
    if not rows:
        return pd.DataFrame(columns=BASE_COLUMNS + ["message", "cell_id", "file", "thresholds", "grid"])
    frame = pd.DataFrame(rows)
    twice = frame[frame.duplicated(["task", "variant", "seed"], keep=False)]
    if not twice.empty:
        raise ValueError("cells counted twice (same task, variant and seed): "
                         + "; ".join(sorted(twice["file"])) + " (select them with results.select_cells)")
    order = variant_order(frame)
    frame["_v"] = frame["variant"].map({v: i for i, v in enumerate(order)})
    frame = frame.sort_values(["task", "_v", "seed", "cell_id"], kind="stable").drop(columns="_v")
    return frame.reset_index(drop=True)


def grid_columns(frame: pd.DataFrame) -> list[str]:
    """Names of the grid parameters that appear in any cell's labels, in a stable order."""
    keys: dict[str, None] = {}
    for grid in frame.get("grid", []):
        for key in grid:
            keys[str(key)] = None
    return sorted(keys)


def threshold_keys(frame: pd.DataFrame) -> list[str]:
    """Every threshold (canonical text) used by any cell of the frame, ascending."""
    values = {float(t) for ts in frame.get("thresholds", []) for t in ts}
    return [thr_key(t) for t in sorted(values)]


def sortable(value: Any) -> tuple[int, float, str]:
    """Sort numbers numerically and before text, so lr=0.01 < 0.1 < 1 and NaN last."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value):
            return (0, float(value), "")
        return (2, 0.0, "")
    return (1, 0.0, str(value))


def variant_order(frame: pd.DataFrame) -> list[str]:
    """Variants sorted by rule, optimizer, then grid values (numbers compared as numbers)."""
    if frame.empty:
        return []
    firsts = frame.drop_duplicates("variant")
    keys = grid_columns(frame)

    def key(row: pd.Series) -> tuple:
        grid = row["grid"]
        return (row["rule"], row["optimizer"], tuple(sortable(grid.get(k)) for k in keys), row["variant"])

    return [r["variant"] for _, r in sorted(firsts.iterrows(), key=lambda item: key(item[1]))]


def curves_frame(cells: Iterable[CellRecord]) -> pd.DataFrame:
    """One row per evaluation line, tagged with its cell's task, variant, seed and status."""
    rows = []
    for cell in cells:
        ident = cell_row(cell)
        for ev in cell.evals:
            rows.append({
                "task": ident["task"], "variant": ident["variant"], "seed": ident["seed"],
                "cell_id": ident["cell_id"], "status": ident["status"],
                **{k: as_number(ev.get(k)) for k in (
                    "updates", "epoch", "examples", "train_seconds", "train_loss",
                    "val_accuracy", "val_loss", "test_accuracy")},
            })
    numbers = ["updates", "epoch", "examples", "train_seconds", "train_loss", "val_accuracy", "val_loss",
               "test_accuracy"]
    frame = pd.DataFrame(rows, columns=["task", "variant", "seed", "cell_id", "status"] + numbers)
    # Numeric even with no rows (a suite whose only cell was interrupted before its first evaluation).
    return frame.astype({c: float for c in numbers})


def split_metric_key(key: str) -> tuple[str, str]:
    """"L1.rel_err_white" -> ("L1", "rel_err_white"); a key without a layer -> ("", key)."""
    head, sep, tail = key.partition(".")
    return (head, tail) if sep and tail else ("", key)


def per_layer_frame(cells: Iterable[CellRecord], field: str) -> pd.DataFrame:
    """Long table of the numeric entries of each eval line's `field` dict ("feedback", ...)."""
    rows = []
    for cell in cells:
        ident = None
        for ev in cell.evals:
            values = ev.get(field)
            if not isinstance(values, dict):
                continue
            ident = ident or cell_row(cell)
            for key, value in values.items():
                number = as_number(value)
                if not math.isfinite(number):
                    continue
                layer, metric = split_metric_key(str(key))
                rows.append({"task": ident["task"], "variant": ident["variant"], "seed": ident["seed"],
                             "status": ident["status"], "updates": as_number(ev.get("updates")),
                             "layer": layer, "metric": metric, "value": number})
    return pd.DataFrame(rows, columns=["task", "variant", "seed", "status", "updates", "layer",
                                       "metric", "value"])


ANGLE_FLOOR_DEG = 0.01   # an angle that never exceeds this is float rounding, not dynamics
RESIDUAL_FLOOR = 1e-5    # nor is a relative error / residual that never exceeds this (float32 ~ 1e-7)


def split_trivial(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a per-layer feedback table into the series worth drawing and those that carry
    nothing: a (variant, layer, metric) series at float-rounding level at every measurement
    (backprop's angle(B, Wᵀ), the pinv oracle's Penrose residuals). Returns (kept, trivial),
    `trivial` with one row per series and its largest value."""
    if frame.empty:
        return frame, pd.DataFrame(columns=["variant", "layer", "metric", "max"])
    peak = frame.assign(a=frame["value"].abs()).groupby(["variant", "layer", "metric"])["a"].max()
    floor = pd.Series([ANGLE_FLOOR_DEG if "angle" in m else RESIDUAL_FLOOR for m in peak.index.get_level_values(2)],
                      index=peak.index)
    trivial = peak[peak <= floor]
    keys = set(trivial.index)
    mask = [k not in keys for k in zip(frame["variant"], frame["layer"], frame["metric"])]
    return frame[mask], trivial.rename("max").reset_index()


@dataclass
class GridGroup:
    """The cells of one rule (or one rule + optimizer) on one task whose grid has at least two points."""
    rule: str                # the title: "bp", or "bp + hybrid-sgd" when split by optimizer
    dims: list[str]          # grid parameters that vary inside this group (may include "optimizer")
    cells: pd.DataFrame      # with one column per dim


def grid_groups(task_cells: pd.DataFrame) -> list[GridGroup]:
    """Group a task's cells by rule; keep groups whose grid has >= 2 points.

    When a rule runs under several optimizers that each have a grid of their own (a robustness
    study: additive against multiplicative against hybrid), each optimizer gets its own group,
    titled "rule + optimizer"; otherwise the optimizer is one more grid dimension.
    """
    groups = []
    for rule, sub in task_cells.groupby("rule", sort=True):
        sub = sub.copy()
        keys = sorted({k for g in sub["grid"] for k in g})
        for key in keys:
            sub[key] = [g.get(key) for g in sub["grid"]]
        per_optimizer = [(str(o), osub) for o, osub in sub.groupby("optimizer", sort=False)]
        if len(per_optimizer) > 1 and all(osub["variant"].nunique() >= 2 for _, osub in per_optimizer):
            parts = [(f"{rule} + {o}", osub, keys) for o, osub in per_optimizer]
        else:
            # The optimizer is a grid dimension too when one rule runs under several.
            parts = [(str(rule), sub, (["optimizer"] if sub["optimizer"].nunique() > 1 else []) + keys)]
        for title, psub, candidates in parts:
            dims = [k for k in candidates if psub[k].map(repr).nunique() > 1]
            if dims and psub["variant"].nunique() >= 2:
                groups.append(GridGroup(title, dims, psub))
    return groups
