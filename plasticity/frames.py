"""Results as data: a suite folder's runs as two pandas DataFrames, and `results.csv`.

    cells, evals = plasticity.load_results("reports/quick")

`cells` has one row per file in `runs/`: identity (task, rule, optimizer, variant, seed), status,
final numbers, updates / examples / training seconds to each validation threshold, the cell's
fingerprint and whether it is part of the suite as it stands (`in_suite`; `stale` names the
fingerprint parts that changed, `note` why a cell does not count), then its FULL configuration
flattened: every task, rule and optimizer parameter with its default (`task.hidden`, `rule.loss`,
`optimizer.lr`, ...), `lr_schedule`, `budget.*`, `evaluation.*` and `dtype`.
`evals` has one row per evaluation: the cell's identity, updates, epoch, examples, training
seconds, losses, accuracies, and the rule's diagnostics (`diagnostics.<name>`) and feedback
metrics (`feedback.<layer>.<name>`, angles in degrees) flattened.

Accuracies are in percent (0-100) in every table a user reads: these frames, `results.csv` and
the report; their columns end in `_pct` (threshold columns too: `updates_to_90pct`). The run
files themselves keep the fractions the engine measures.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .report.tables import _number, cell_row, thr_key, variant_order
from .results import CellRecord, Placement, Selection, select_cells

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
            row = {**base, **{k: _number(ev.get(k)) for k in EVAL_NUMBERS},
                   "val_accuracy_pct": pct(_number(ev.get("val_accuracy"))),
                   "test_accuracy_pct": pct(_number(ev.get("test_accuracy")))}
            for field in ("diagnostics", "feedback"):
                values = ev.get(field)
                if isinstance(values, dict):
                    row.update({f"{field}.{k}": _number(v) for k, v in values.items()})
            rows.append(row)
    columns = list(dict.fromkeys(["task", "variant", "seed", "status", "in_suite", "cell_id", "file"]
                                 + EVAL_NUMBERS + ["val_accuracy_pct", "test_accuracy_pct"]
                                 + [k for r in rows for k in r]))
    frame = pd.DataFrame(rows, columns=columns)
    for col in ("seed", "updates", "examples"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").round().astype("Int64")
    return frame


def load_results(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs of a suite folder (e.g. "reports/quick") as (cells, evaluations) DataFrames.

    Every file in `runs/` is a row of `cells`; `cells[cells.in_suite]` are the cells the report
    counts (the suite as `plasticity run` last expanded it). Accuracies are in percent (`*_pct`).
    """
    folder = Path(folder)
    if not (folder / "runs").is_dir():
        from .errors import PlasticityError
        raise PlasticityError(f"{folder} has no runs/ folder: give the output folder of `plasticity run`, "
                              f"e.g. reports/quick")
    selection = select_cells(folder)
    return cells_table(selection), evaluations_table(selection)


def results_table(cells: Selection | Iterable[CellRecord | Placement]) -> pd.DataFrame:
    """The rows of `results.csv`: the suite's finished and errored cells (not the interrupted
    ones, not files outside the suite), with the columns of `cells_table` but `in_suite` and `note`."""
    frame = cells_table(cells)
    frame = frame[frame["in_suite"].astype(bool) & (frame["status"] != "incomplete")]
    return frame.drop(columns=["in_suite", "note"]).reset_index(drop=True)
