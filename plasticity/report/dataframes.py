"""The runs of a suite folder as pandas DataFrames: one row per cell (`cells_table`), one per
evaluation (`evaluations_table`), and the rows of `results.csv` (`results_table`,
`write_results_csv`); built on the report's cell rows (plasticity.report.tables). The columns
are described in plasticity.frames, the public face of these tables (`load_results`).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ..results import CellRecord, Placement, Selection
from .tables import as_number, cell_row, thr_key, variant_order

#: Final numbers of a cell that are accuracies (fractions in the run files, percent here).
ACCURACY_COLUMNS = ("val_accuracy", "test_accuracy", "best_val_accuracy", "largest_drop")
IDENTITY_COLUMNS = ["task", "rule", "optimizer", "variant", "seed", "status", "in_suite", "stale"]
FINAL_COLUMNS = ["updates", "examples", "train_seconds", "val_accuracy_pct", "test_accuracy_pct",
                 "best_val_accuracy_pct", "largest_drop_pct", "wall_seconds"]
META_COLUMNS = ["message", "cell_id", "fingerprint", "file", "note"]
EVAL_NUMBERS = ["updates", "epoch", "examples", "train_seconds", "train_loss", "val_loss"]
THRESHOLD_KINDS = ("updates_to", "examples_to", "seconds_to")


def pct(fraction: Any) -> float:
    """An accuracy fraction as percent (NaN stays NaN)."""
    try:
        return float(fraction) * 100.0
    except (TypeError, ValueError):
        return math.nan


def threshold_column(kind: str, threshold: float | str) -> str:
    """"updates_to", 0.975 -> "updates_to_97.5pct"."""
    return f"{kind}_{round(float(threshold) * 100, 6):g}pct"


def _plain(value: Any) -> Any:
    """Lists (a hidden-layer tuple, say) as tuples, so columns stay hashable for groupby."""
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


def config_columns(config: dict[str, Any]) -> dict[str, Any]:
    """A cell's configuration flattened: task.*, rule.*, optimizer.*, lr_schedule, budget.*, evaluation.*, dtype."""
    out: dict[str, Any] = {}
    for part in ("task", "rule", "optimizer"):
        for key, value in ((config.get(part) or {}).get("params") or {}).items():
            out[f"{part}.{key}"] = _plain(value)
    out["lr_schedule"] = (config.get("optimizer") or {}).get("schedule")
    for part in ("budget", "evaluation"):
        for key, value in (config.get(part) or {}).items():
            out[f"{part}.{key}"] = _plain(value)
    out["dtype"] = config.get("dtype")
    return out


def _placements(cells: Selection | Iterable[CellRecord | Placement]) -> list[Placement]:
    if isinstance(cells, Selection):
        return list(cells.placements)
    return [c if isinstance(c, Placement) else Placement(c, True) for c in cells]


def cells_table(cells: Selection | Iterable[CellRecord | Placement]) -> pd.DataFrame:
    """One row per cell (see the module doc); plain records count as part of the suite."""
    rows, configs = [], []
    for p in _placements(cells):
        row = cell_row(p.record)
        for col in ACCURACY_COLUMNS:
            row[f"{col}_pct"] = pct(row.pop(col))
        for kind in THRESHOLD_KINDS:
            for t in row["thresholds"]:
                row[threshold_column(kind, t)] = row.pop(f"{kind}_{thr_key(t)}")
        fp = p.record.header.get("fingerprint")
        row.update(in_suite=p.in_suite, stale=", ".join(p.stale), note=p.reason,
                   fingerprint=fp.get("hash") if isinstance(fp, dict) else None)
        config = config_columns(p.record.header.get("config") or {})
        configs.append(list(config))
        rows.append({**row, **config})
    thresholds = sorted({float(t) for r in rows for t in r["thresholds"]})
    config_cols = list(dict.fromkeys(k for keys in configs for k in keys))
    columns = (IDENTITY_COLUMNS + FINAL_COLUMNS
               + [threshold_column(kind, t) for kind in THRESHOLD_KINDS for t in thresholds]
               + META_COLUMNS + config_cols)
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    order = {v: i for i, v in enumerate(variant_order(frame))}
    frame["_v"] = frame["variant"].map(order)
    frame = frame.sort_values(["task", "_v", "seed", "in_suite", "file"], kind="stable")
    frame = frame.reindex(columns=columns).reset_index(drop=True)
    for col in ["seed", "updates", "examples"] + [c for c in columns if c.startswith(("updates_to_", "examples_to_"))]:
        # Nullable integers: an update count reads 120, not 120.0, and a miss is empty.
        frame[col] = pd.to_numeric(frame[col], errors="coerce").round().astype("Int64")
    return frame


def evaluations_table(cells: Selection | Iterable[CellRecord | Placement]) -> pd.DataFrame:
    """One row per evaluation line (see the module doc)."""
    rows = []
    for p in _placements(cells):
        ident = cell_row(p.record)
        base = {"task": ident["task"], "variant": ident["variant"], "seed": ident["seed"],
                "status": ident["status"], "in_suite": p.in_suite, "cell_id": ident["cell_id"],
                "file": ident["file"]}
        for ev in p.record.evals:
            row = {**base, **{k: as_number(ev.get(k)) for k in EVAL_NUMBERS},
                   "val_accuracy_pct": pct(as_number(ev.get("val_accuracy"))),
                   "test_accuracy_pct": pct(as_number(ev.get("test_accuracy")))}
            for field in ("diagnostics", "feedback"):
                values = ev.get(field)
                if isinstance(values, dict):
                    row.update({f"{field}.{k}": as_number(v) for k, v in values.items()})
            rows.append(row)
    columns = list(dict.fromkeys(["task", "variant", "seed", "status", "in_suite", "cell_id", "file"]
                                 + EVAL_NUMBERS + ["val_accuracy_pct", "test_accuracy_pct"]
                                 + [k for r in rows for k in r]))
    frame = pd.DataFrame(rows, columns=columns)
    for col in ("seed", "updates", "examples"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").round().astype("Int64")
    return frame


def results_table(cells: Selection | Iterable[CellRecord | Placement]) -> pd.DataFrame:
    """The rows of `results.csv`: the suite's finished and errored cells (not the interrupted
    ones, not files outside the suite), with the columns of `cells_table` but `in_suite` and `note`."""
    frame = cells_table(cells)
    frame = frame[frame["in_suite"].astype(bool) & (frame["status"] != "incomplete")]
    return frame.drop(columns=["in_suite", "note"]).reset_index(drop=True)


def write_results_csv(cells: Iterable[CellRecord | Placement] | Selection, path: Path) -> Path:
    """Write `results.csv`: one row per finished or errored cell of the suite (interrupted cells
    and files outside the suite are not results), with the columns of `plasticity.load_results`
    (accuracies in percent, the full configuration; see `plasticity.frames`)."""
    out = results_table(cells)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    out.to_csv(tmp, index=False)
    tmp.replace(path)
    return path
