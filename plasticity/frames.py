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

from pathlib import Path

import pandas as pd

from .report.dataframes import (
    cells_table,
    config_columns,
    evaluations_table,
    pct,
    results_table,
    threshold_column,
    write_results_csv,
)
from .results import select_cells

__all__ = ["cells_table", "config_columns", "evaluations_table", "load_results", "pct", "results_table",
           "threshold_column", "write_results_csv"]


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
